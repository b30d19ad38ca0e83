"""Padding and output size of the deformable convolution, for the op and the layers.

`padding` is `"valid"`, `"same"` (any case; TensorFlow's rule: `ceil(size / stride)`
outputs, the odd pixel of an odd total padding at the bottom / right), an int `p`, a
pair `(ph, pw)` (the same before and after) or `((top, bottom), (left, right))`, of
non-negative ints. Sizes, kernel sizes, strides and dilations are `(height, width)`
pairs.
"""

import numbers

_FORMS = ('"valid", "same", an int p, a pair (ph, pw) or ((top, bottom), (left, right)) '
          'of non-negative ints')


def _non_negative_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _dilated(kernel, dilation):
    """Extent of `kernel` taps `dilation` pixels apart."""
    return (kernel - 1) * dilation + 1


def parse(padding):
    """`(mode, pads)` of `padding`, the op's attributes.

    Returns:
      mode: `"VALID"`, `"SAME"` or `"EXPLICIT"`; pads: `[top, bottom, left, right]` for
      `"EXPLICIT"`, `[]` otherwise.

    Raises:
      ValueError: `padding` is none of the accepted forms.
    """
    error = ValueError(f"padding must be {_FORMS}, got {padding!r}")
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in ("VALID", "SAME"):
            raise error
        return mode, []
    if _non_negative_int(padding):
        return "EXPLICIT", [int(padding)] * 4
    try:
        pair = tuple(padding)
    except TypeError:
        raise error from None
    if len(pair) != 2:
        raise error
    if all(_non_negative_int(p) for p in pair):
        return "EXPLICIT", [int(pair[0])] * 2 + [int(pair[1])] * 2
    try:
        (top, bottom), (left, right) = pair
    except (TypeError, ValueError):
        raise error from None
    if not all(_non_negative_int(p) for p in (top, bottom, left, right)):
        raise error
    return "EXPLICIT", [int(top), int(bottom), int(left), int(right)]


def standardize(padding):
    """`padding` checked (as `parse`), in the form a layer keeps in its config:
    `"valid"` / `"same"` in lower case, an int, or the given pairs as tuples."""
    mode, _ = parse(padding)
    if isinstance(padding, str):
        return mode.lower()
    if isinstance(padding, numbers.Integral):
        return padding
    return tuple(p if isinstance(p, numbers.Integral) else tuple(p) for p in padding)


def output_size(size, kernel_size, strides, dilations, padding):
    """`(Ho, Wo)` of the op for inputs of spatial size `size` `(H, W)`.

    Along an axis: None when the input or kernel size is None (unknown);
    `ceil(size / stride)` for SAME; otherwise `(padded - dilated) // stride + 1` with
    `padded = size + before + after` and `dilated = (kernel - 1) * dilation + 1`, or 0
    when the dilated kernel is larger than the padded input (a call the op refuses).
    """
    mode, pads = parse(padding)
    pads = pads or [0, 0, 0, 0]
    lengths = []
    for axis in range(2):
        length, kernel = size[axis], kernel_size[axis]
        if length is None or kernel is None:
            lengths.append(None)
        elif mode == "SAME":
            lengths.append(-(-length // strides[axis]))
        else:
            padded = length + pads[2 * axis] + pads[2 * axis + 1]
            dilated = _dilated(kernel, dilations[axis])
            lengths.append(0 if padded < dilated else (padded - dilated) // strides[axis] + 1)
    return tuple(lengths)


def resolve(size, kernel_size, strides, dilations, padding):
    """`(top, bottom, left, right)` the op pads inputs of spatial size `size` `(H, W)`
    with: zeros for VALID, the given pads for an explicit padding, and for SAME a total
    of `max((Ho - 1) * stride + dilated - size, 0)` per axis, the odd pixel after."""
    mode, pads = parse(padding)
    if mode != "SAME":
        return tuple(pads) or (0, 0, 0, 0)
    outputs = output_size(size, kernel_size, strides, dilations, padding)
    pads = []
    for axis in range(2):
        dilated = _dilated(kernel_size[axis], dilations[axis])
        total = max((outputs[axis] - 1) * strides[axis] + dilated - size[axis], 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)
