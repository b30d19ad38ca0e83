"""Random cases of `keras_dcn.ops.deform_conv2d` for the op tests: the case, the op
and the plain-TensorFlow reference (tests/reference.py) run on it with their gradients,
and the comparison of the two."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.ops import deform_conv2d
from tests import reference
from tests.ops.helpers import assert_close

TENSOR_NAMES = ("inputs", "offsets", "kernel", "mask", "bias")
# Tensors laid out as [N, H, W, C] or [N, C, H, W] depending on data_format.
IMAGE_LIKE = ("inputs", "offsets", "mask")

# Every option of the op, one at a time and in the combinations that matter: the
# arguments of `make_case` for the reference tests of each implementation.
GRID = [
    pytest.param(dict(), id="valid"),
    pytest.param(dict(padding="same"), id="same"),
    # 7 rows at stride 2 pad (1, 1); 6 columns pad (0, 1): the odd pixel at the right.
    pytest.param(dict(size=(7, 6), padding="same", strides=2), id="same_stride2_odd"),
    pytest.param(dict(size=(7, 8), padding="same", strides=(2, 1), dilation_rate=(1, 2)),
                 id="same_asymmetric_stride_dilation"),
    pytest.param(dict(kernel_size=(2, 3), padding="same"), id="same_even_kernel"),
    pytest.param(dict(padding=1), id="int_padding"),
    pytest.param(dict(padding=(2, 1)), id="pair_padding"),
    pytest.param(dict(padding=((0, 2), (1, 0))), id="explicit_padding"),
    pytest.param(dict(size=(9, 8), strides=(2, 3), dilation_rate=(2, 1), padding=1),
                 id="strides_dilations_pairs"),
    pytest.param(dict(strides=2, dilation_rate=2, padding=2, size=(8, 7)),
                 id="strides_dilations_ints"),
    pytest.param(dict(groups=2), id="groups"),
    pytest.param(dict(deformable_groups=2), id="deformable_groups"),
    # Conv groups of 4 channels and deformable groups of 6: boundaries do not line up.
    pytest.param(dict(channels=12, filters=6, groups=3, deformable_groups=2),
                 id="groups3_dg2_misaligned"),
    pytest.param(dict(channels=12, filters=8, groups=4, deformable_groups=3),
                 id="groups4_dg3_misaligned"),
    pytest.param(dict(channels=5, filters=7), id="odd_channels_filters"),
    pytest.param(dict(kernel_size=1), id="kernel_1x1"),
    pytest.param(dict(kernel_size=(2, 3), padding=((1, 0), (1, 1))), id="kernel_2x3"),
    pytest.param(dict(size=(7, 7), kernel_size=5, padding=2), id="kernel_5x5"),
    pytest.param(dict(mask=False), id="no_mask"),
    pytest.param(dict(bias=False), id="no_bias"),
    pytest.param(dict(mask=False, bias=False, groups=2, deformable_groups=2),
                 id="no_mask_no_bias_groups"),
]


def pair(value):
    """An int or a pair as a pair."""
    return (value, value) if isinstance(value, int) else tuple(value)


def resolve_padding(padding, size, kernel_size, strides, dilations):
    """(top, bottom, left, right) of any accepted form of `padding`.

    "same" follows TensorFlow: ceil(size / stride) outputs, and the odd pixel of an
    odd total padding goes to the bottom / right.
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        pads = []
        for n, k, s, d in zip(size, kernel_size, strides, dilations):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    if isinstance(padding, int):
        return (padding,) * 4
    if all(isinstance(p, int) for p in padding):
        return (padding[0], padding[0], padding[1], padding[1])
    (top, bottom), (left, right) = padding
    return (top, bottom, left, right)


def output_size(size, kernel_size, strides, dilations, pads):
    """(Ho, Wo) for (top, bottom, left, right) padding."""
    return tuple(
        (n + before + after - (k - 1) * d - 1) // s + 1
        for n, k, s, d, before, after in zip(
            size, kernel_size, strides, dilations, pads[0::2], pads[1::2]))


@dataclasses.dataclass
class Case:
    """One call of the op, every tensor float64 and channels last."""

    inputs: np.ndarray
    offsets: np.ndarray
    kernel: np.ndarray
    mask: np.ndarray | None
    bias: np.ndarray | None
    strides: object  # as the op is given them: an int or a pair
    padding: object
    dilation_rate: object
    groups: int
    deformable_groups: int
    pads: tuple

    def tensors(self):
        """The tensors the op takes, without the absent mask / bias."""
        return {name: getattr(self, name) for name in TENSOR_NAMES
                if getattr(self, name) is not None}

    @property
    def stride_pair(self):
        return pair(self.strides)

    @property
    def dilation_pair(self):
        return pair(self.dilation_rate)

    def op_kwargs(self):
        return dict(strides=self.strides, padding=self.padding,
                    dilation_rate=self.dilation_rate, groups=self.groups,
                    deformable_groups=self.deformable_groups)

    def reference_kwargs(self):
        return dict(strides=self.stride_pair, pads=self.pads, dilations=self.dilation_pair,
                    groups=self.groups, deformable_groups=self.deformable_groups)

    @property
    def output_shape(self):
        return self.offsets.shape[:3] + self.kernel.shape[3:]


def make_case(rng, *, batch=2, size=(6, 5), channels=4, filters=6, kernel_size=(3, 3),
              strides=1, padding="valid", dilation_rate=1, groups=1,
              deformable_groups=1, mask=True, bias=True, offset_scale=2.0):
    """A random case. Offsets are normal with `offset_scale` pixels of spread, which on
    these small images sends many sampling points past the border."""
    kernel_size = pair(kernel_size)
    pads = resolve_padding(padding, size, kernel_size, pair(strides), pair(dilation_rate))
    out = output_size(size, kernel_size, pair(strides), pair(dilation_rate), pads)
    taps = deformable_groups * kernel_size[0] * kernel_size[1]
    return Case(
        inputs=rng.normal(size=(batch, *size, channels)),
        offsets=rng.normal(scale=offset_scale, size=(batch, *out, 2 * taps)),
        kernel=rng.normal(size=(*kernel_size, channels // groups, filters)),
        mask=rng.uniform(0.0, 1.0, size=(batch, *out, taps)) if mask else None,
        bias=rng.normal(size=(filters,)) if bias else None,
        strides=strides, padding=padding, dilation_rate=dilation_rate, groups=groups,
        deformable_groups=deformable_groups, pads=pads)


def sampling_points(case):
    """(y, x) of every sampling point, each [N, Ho, Wo, dg, kh, kw], from the API's formula."""
    n, ho, wo = case.offsets.shape[:3]
    kh, kw = case.kernel.shape[:2]
    off = case.offsets.reshape(n, ho, wo, case.deformable_groups, kh, kw, 2)
    (sh, sw), (dh, dw) = case.stride_pair, case.dilation_pair
    base_y = (np.arange(ho) * sh - case.pads[0])[:, None, None, None, None] \
        + (np.arange(kh) * dh)[:, None]
    base_x = (np.arange(wo) * sw - case.pads[2])[:, None, None, None] + np.arange(kw) * dw
    return base_y + off[..., 0], base_x + off[..., 1]


def to_layout(name, value, data_format):
    """The channels-last tensor `name` laid out for `data_format`."""
    if data_format == "channels_first" and name in IMAGE_LIKE:
        return tf.transpose(value, [0, 3, 1, 2])
    return value


def from_layout(name, value, data_format):
    """The tensor `name`, laid out for `data_format`, as channels last."""
    if data_format == "channels_first" and name in IMAGE_LIKE:
        return tf.transpose(value, [0, 2, 3, 1])
    return value


def rounded(tensors, dtype):
    """`tensors` (NumPy arrays) as tensors of `dtype`."""
    return {name: tf.cast(tf.constant(value, tf.float64), dtype)
            for name, value in tensors.items()}


def op_with_grads(case, upstream, dtype=tf.float64, data_format="channels_last",
                  tensors=None, implementation="auto"):
    """Output and the gradients of sum(upstream * output), as float64 NumPy arrays in
    channels-last layout. `tensors` overrides the case's values (already in `dtype`)."""
    tensors = tensors if tensors is not None else rounded(case.tensors(), dtype)
    fed = {name: to_layout(name, value, data_format) for name, value in tensors.items()}
    with tf.GradientTape() as tape:
        tape.watch(fed)
        output = deform_conv2d(**fed, data_format=data_format, **case.op_kwargs(),
                               implementation=implementation)
    grads = tape.gradient(output, fed, output_gradients=to_layout(
        "inputs", tf.cast(upstream, dtype), data_format))
    as_array = lambda name, t: tf.cast(from_layout(name, t, data_format), tf.float64).numpy()
    return as_array("inputs", output), {name: as_array(name, g) for name, g in grads.items()}


def reference_with_grads(case, upstream, dtype=tf.float64, tensors=None):
    """Reference output and gradients in float64, from the values rounded to `dtype`."""
    tensors = tensors if tensors is not None else rounded(case.tensors(), dtype)
    tensors = {name: tf.cast(value, tf.float64) for name, value in tensors.items()}
    upstream = tf.cast(tf.cast(upstream, dtype), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        output = reference.deform_conv2d(**tensors, **case.reference_kwargs())
    grads = tape.gradient(output, tensors, output_gradients=upstream)
    return output.numpy(), {name: g.numpy() for name, g in grads.items()}


def assert_matches_reference(case, rng, dtype=tf.float64, data_format="channels_last",
                             implementation="auto"):
    """The op's output and gradients (of a random upstream gradient drawn from `rng`)
    equal the reference's on `case`, run in `dtype` and `data_format` with
    `implementation`."""
    upstream = rng.normal(size=case.output_shape)
    tensors = rounded(case.tensors(), dtype)
    got, got_grads = op_with_grads(case, upstream, dtype, data_format, tensors,
                                   implementation)
    want, want_grads = reference_with_grads(case, upstream, dtype, tensors)
    assert_close(got, want, dtype, "output")
    assert set(got_grads) == set(case.tensors())
    for name in got_grads:
        assert_close(got_grads[name], want_grads[name], dtype, f"gradient of {name}")

