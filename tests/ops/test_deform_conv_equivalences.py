"""keras_dcn.ops.deform_conv2d against regular convolutions, without the reference:
zero offsets are tf.nn.conv2d (outputs and gradients), integer offsets convolve moved
images, and a zero mask leaves the bias only."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.ops import deform_conv2d
from tests.ops.conv_cases import (
    from_layout, make_case, op_with_grads, reference_with_grads, to_layout)
from tests.ops.helpers import DATA_FORMATS, assert_close


def conv2d(case, inputs=None, padding=None):
    """tf.nn.conv2d of the case (NHWC, grouped when the kernel is), plus its bias."""
    if padding is None:
        padding = "SAME" if case.padding == "same" else [
            [0, 0], list(case.pads[:2]), list(case.pads[2:]), [0, 0]]
    out = tf.nn.conv2d(case.inputs if inputs is None else inputs, case.kernel,
                       strides=case.strides, padding=padding, dilations=case.dilation_rate)
    return out if case.bias is None else out + case.bias


def split_conv2d(inputs, kernel, bias, case):
    """The grouped, dilated convolution of the case from undilated, ungrouped
    tf.nn.conv2d calls, whose CPU gradients TensorFlow supports: one call per group,
    and the dilation as zeros inserted between the kernel taps."""
    kh, kw, cg, filters = kernel.shape
    dh, dw = case.dilation_pair
    spread = tf.pad(tf.reshape(kernel, [kh, 1, kw, 1, cg, filters]),
                    [[0, 0], [0, dh - 1], [0, 0], [0, dw - 1], [0, 0], [0, 0]])
    spread = tf.reshape(spread, [kh * dh, kw * dw, cg, filters])[:(kh - 1) * dh + 1,
                                                                  :(kw - 1) * dw + 1]
    padding = [[0, 0], list(case.pads[:2]), list(case.pads[2:]), [0, 0]]
    out = tf.concat([
        tf.nn.conv2d(x, k, strides=case.strides, padding=padding)
        for x, k in zip(tf.split(inputs, case.groups, axis=3),
                        tf.split(spread, case.groups, axis=3))], axis=3)
    return out + bias


CONV_CASES = [
    pytest.param(dict(), id="valid"),
    pytest.param(dict(size=(7, 6), padding="same", strides=2), id="same_stride2"),
    pytest.param(dict(size=(6, 7), padding="same", kernel_size=(2, 3), dilation_rate=(2, 1)),
                 id="same_dilated_even_kernel"),
    pytest.param(dict(padding=((1, 2), (0, 1)), strides=(1, 2)), id="explicit_padding"),
    pytest.param(dict(padding=1, groups=2, filters=4), id="groups"),
    pytest.param(dict(padding=(1, 0), groups=4, filters=8, deformable_groups=2,
                      dilation_rate=(1, 2)), id="depthwise_dg2_dilated"),
]


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("config", CONV_CASES)
def test_zero_offsets_without_mask_equal_conv2d(config, data_format, rng):
    case = make_case(rng, mask=False, offset_scale=0.0, **config)
    upstream = rng.normal(size=case.output_shape)
    got, grads = op_with_grads(case, upstream, data_format=data_format)
    assert_close(got, conv2d(case).numpy(), what="output")

    tensors = {name: tf.constant(case.tensors()[name]) for name in ("inputs", "kernel", "bias")}
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        want = split_conv2d(**tensors, case=case)
    want_grads = tape.gradient(want, tensors, output_gradients=upstream)
    assert_close(got, want.numpy(), what="output of the split convolution")
    for name, grad in want_grads.items():
        assert_close(grads[name], grad.numpy(), what=f"gradient of {name}")


def shifted(image, dy, dx, size):
    """out[n, y, x] = image[n, y + dy, x + dx] (0 outside the image); out has `size`
    rows and columns."""
    rows, cols = size
    margin = abs(dy) + abs(dx) + rows + cols
    padded = np.pad(image, [(0, 0), (margin, margin), (margin, margin), (0, 0)])
    return padded[:, margin + dy:margin + dy + rows, margin + dx:margin + dx + cols]


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("shift", [(1, -2), (-3, 0), (0, 4), (2, 2), (9, 0)])
def test_uniform_integer_offsets_equal_conv_of_shifted_image(shift, data_format, rng):
    """Every tap moved by the same (dy, dx): a valid convolution of the zero-padded
    image moved by (dy, dx)."""
    case = make_case(rng, size=(7, 6), padding="same", strides=(1, 2), groups=2, mask=False)
    case.offsets = np.zeros_like(case.offsets)
    case.offsets[..., 0::2], case.offsets[..., 1::2] = shift
    got = deform_conv2d(*[to_layout(name, case.tensors()[name], data_format)
                          for name in ("inputs", "offsets", "kernel")],
                        bias=case.bias, data_format=data_format, **case.op_kwargs())
    top, bottom, left, right = case.pads
    (height, width), (dy, dx) = case.inputs.shape[1:3], shift
    canvas = shifted(case.inputs, dy - top, dx - left,
                     (height + top + bottom, width + left + right))
    want = conv2d(case, inputs=canvas, padding="VALID")
    assert_close(from_layout("inputs", got, data_format).numpy(), want.numpy())


def test_per_tap_integer_offsets_equal_sum_of_shifted_products(rng):
    """Each tap moved by its own integer (dy, dx): a check of the offset channel order
    that does not use the reference."""
    case = make_case(rng, size=(6, 7), channels=3, filters=4, kernel_size=(2, 3),
                     strides=(1, 2), padding=1, mask=False, bias=False)
    kh, kw = case.kernel.shape[:2]
    moves = rng.integers(-3, 4, size=(kh, kw, 2))
    case.offsets = np.broadcast_to(moves.reshape(-1), case.offsets.shape).copy()
    got = deform_conv2d(case.inputs, case.offsets, case.kernel, **case.op_kwargs())

    ho, wo = case.output_shape[1:3]
    (sh, sw), top, left = case.stride_pair, case.pads[0], case.pads[2]
    want = 0.0
    for i in range(kh):
        for j in range(kw):
            dy, dx = moves[i, j]
            image = shifted(case.inputs, i - top + dy, j - left + dx, (ho * sh, wo * sw))
            want = want + image[:, ::sh, ::sw] @ case.kernel[i, j]
    assert_close(got.numpy(), want)


@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_zero_mask_gives_bias_only(data_format, rng):
    case = make_case(rng, padding=1, groups=2, deformable_groups=2, offset_scale=1.0)
    case.mask = np.zeros_like(case.mask)
    upstream = rng.normal(size=case.output_shape)
    got, grads = op_with_grads(case, upstream, data_format=data_format)
    _, want_grads = reference_with_grads(case, upstream)
    np.testing.assert_array_equal(got, np.broadcast_to(case.bias, got.shape))
    for name in ("inputs", "offsets", "kernel"):
        np.testing.assert_array_equal(grads[name], 0.0, err_msg=name)
    assert_close(grads["bias"], upstream.sum(axis=(0, 1, 2)), what="bias gradient")
    assert np.any(grads["mask"] != 0)
    assert_close(grads["mask"], want_grads["mask"], what="mask gradient")
