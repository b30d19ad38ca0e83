"""Gradient scaling: how the layers' offset branches learn at `offset_lr_multiplier`
times the rate of the other weights."""

from keras_dcn.ops import _args


def lr_multiplier(value):
    """`offset_lr_multiplier` checked: a finite number >= 0, as a float."""
    multiplier = _args.finite_float(value, "offset_lr_multiplier")
    if multiplier < 0:
        raise ValueError(f"offset_lr_multiplier must be >= 0, got {value!r}")
    return multiplier


def scale_gradient(xp, x, multiplier):
    """`x` in the forward pass; the gradient flowing back through it times `multiplier`.

    `x` is a tensor of any shape and float dtype, `xp` the array namespace it belongs
    to (`keras_dcn.ops._array_namespace`). The forward value is `x` exactly (for
    finite `x`): `stop_gradient(x) + (x - stop_gradient(x)) * multiplier`, whose
    derivative is `multiplier`, on every backend. With a multiplier of 1 it is returned
    unchanged (no extra op).
    """
    if multiplier == 1:
        return x
    frozen = xp.stop_gradient(x)
    return frozen + (x - frozen) * multiplier
