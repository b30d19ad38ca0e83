"""Sanity checks of the plain-TensorFlow reference (tests/reference.py) itself, against
regular convolutions and interpolation written out by hand."""

import numpy as np
import pytest
import tensorflow as tf

from tests import reference


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def reference_conv(inputs, offsets, kernel, **kwargs):
    return reference.deform_conv2d(tf.constant(inputs), tf.constant(offsets),
                                   tf.constant(kernel), **kwargs).numpy()


def zero_offsets(inputs, kernel, pads, strides=(1, 1), dilations=(1, 1), dg=1):
    _, h, w, _ = inputs.shape
    kh, kw = kernel.shape[:2]
    ho = (h + pads[0] + pads[1] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    wo = (w + pads[2] + pads[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    return np.zeros((inputs.shape[0], ho, wo, 2 * dg * kh * kw))


@pytest.mark.parametrize("pads, strides, dilations, groups", [
    ((0, 0, 0, 0), (1, 1), (1, 1), 1),
    ((1, 1, 1, 1), (2, 1), (1, 1), 1),
    ((0, 2, 1, 0), (1, 1), (2, 1), 1),
    ((1, 0, 1, 1), (1, 2), (1, 1), 2),
])
def test_zero_offsets_equal_conv2d(pads, strides, dilations, groups, rng):
    inputs = rng.normal(size=(2, 6, 7, 4))
    kernel = rng.normal(size=(3, 2, 4 // groups, 6))
    offsets = zero_offsets(inputs, kernel, pads, strides, dilations)
    got = reference_conv(inputs, offsets, kernel, pads=pads, strides=strides,
                         dilations=dilations, groups=groups)
    want = tf.nn.conv2d(inputs, kernel, strides=strides, dilations=dilations,
                        padding=[[0, 0], list(pads[:2]), list(pads[2:]), [0, 0]])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-12)


@pytest.mark.parametrize("dy, dx", [(1, 0), (-2, 3), (0, -1)])
def test_uniform_integer_offset_equals_conv_of_shifted_image(dy, dx, rng):
    inputs = rng.normal(size=(1, 5, 6, 3))
    kernel = rng.normal(size=(3, 3, 3, 2))
    offsets = zero_offsets(inputs, kernel, (0, 0, 0, 0))
    offsets[..., 0::2], offsets[..., 1::2] = dy, dx
    got = reference_conv(inputs, offsets, kernel)
    moved = np.roll(inputs, (-dy, -dx), axis=(1, 2))  # moved[y, x] = inputs[y + dy, x + dx]
    rows, cols = np.arange(5) + dy, np.arange(6) + dx
    moved[:, (rows < 0) | (rows >= 5)] = 0
    moved[:, :, (cols < 0) | (cols >= 6)] = 0
    want = tf.nn.conv2d(moved, kernel, 1, "VALID")
    np.testing.assert_allclose(got, want.numpy(), atol=1e-12)


def bilinear_by_hand(image, y, x):
    """Bilinear value of a 2-D `image` at (y, x); zeros outside, 0 beyond (-1, H) x (-1, W)."""
    h, w = image.shape
    if not (-1 < y < h and -1 < x < w):
        return 0.0
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    total = 0.0
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            if 0 <= yy < h and 0 <= xx < w:
                total += (1 - abs(y - yy)) * (1 - abs(x - xx)) * image[yy, xx]
    return total


@pytest.mark.parametrize("y, x", [(1.3, 2.6), (-0.4, 0.2), (3.7, -0.9), (2.0, 4.5),
                                  (-1.0, 1.0), (4.0, 2.0), (0.5, 5.2)])
def test_single_point_matches_bilinear_by_hand(y, x, rng):
    """A 1x1 kernel of weight 1 on a one-pixel output reads exactly one point."""
    image = rng.normal(size=(4, 5))
    offsets = np.zeros((1, 4, 5, 2))
    offsets[0, 0, 0] = y, x  # output pixel (0, 0) samples (0 + y, 0 + x)
    got = reference_conv(image[None, :, :, None], offsets, np.ones((1, 1, 1, 1)))
    np.testing.assert_allclose(got[0, 0, 0, 0], bilinear_by_hand(image, y, x), atol=1e-12)


def test_deformable_groups_use_their_own_offsets(rng):
    """Channel c follows the offsets of group c // (C // dg): with an identity 1x1 kernel,
    each half of the channels equals a one-group reference run on that half alone."""
    inputs = rng.normal(size=(1, 4, 5, 4))
    offsets = rng.normal(scale=1.5, size=(1, 4, 5, 4))
    mask = rng.uniform(size=(1, 4, 5, 2))
    eye = np.eye(4).reshape(1, 1, 4, 4)
    got = reference.deform_conv2d(inputs, offsets, tf.constant(eye), mask,
                                  deformable_groups=2).numpy()
    for g in range(2):
        part = reference.deform_conv2d(inputs[..., 2 * g:2 * g + 2], offsets[..., 2 * g:2 * g + 2],
                                       tf.constant(np.eye(2).reshape(1, 1, 2, 2)),
                                       mask[..., g:g + 1]).numpy()
        np.testing.assert_allclose(got[..., 2 * g:2 * g + 2], part, atol=1e-12)


def test_groups_equal_split_convolutions(rng):
    inputs = rng.normal(size=(1, 5, 5, 6))
    offsets = rng.normal(size=(1, 3, 3, 18))
    kernel = rng.normal(size=(3, 3, 2, 6))
    got = reference_conv(inputs, offsets, kernel, groups=3)
    parts = [reference_conv(inputs[..., 2 * g:2 * g + 2], offsets, kernel[..., 2 * g:2 * g + 2])
             for g in range(3)]
    np.testing.assert_allclose(got, np.concatenate(parts, axis=-1), atol=1e-12)


def test_offset_gradient_follows_the_border_rule():
    """d/dy of a single tap: 0 at y = -1 (the point reads 0), the right-hand slope
    image[y + 1] - image[y] at an interior integer y."""
    image = np.arange(1.0, 21.0).reshape(4, 5) ** 2  # slopes differ from row to row

    def gradient(y, x):
        offsets = np.zeros((1, 4, 5, 2))
        offsets[0, 0, 0] = y, x
        offsets = tf.constant(offsets)
        with tf.GradientTape() as tape:
            tape.watch(offsets)
            out = reference.deform_conv2d(image[None, :, :, None], offsets,
                                          tf.ones([1, 1, 1, 1], tf.float64))
            value = out[0, 0, 0, 0]
        return tape.gradient(value, offsets).numpy()[0, 0, 0]

    assert np.all(gradient(-1.0, 2.0) == 0.0)
    assert np.all(gradient(1.0, -1.0) == 0.0)
    np.testing.assert_allclose(gradient(2.0, 3.0), [image[3, 3] - image[2, 3],
                                                    image[2, 4] - image[2, 3]])
    np.testing.assert_allclose(gradient(-0.5, 3.0)[0], image[0, 3])
