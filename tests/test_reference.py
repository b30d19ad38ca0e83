"""Sanity checks of the plain-TensorFlow references (tests/reference.py) themselves:
deformable convolution against regular convolutions and interpolation written out by
hand, deformable RoI pooling against RoIAlign written loop by loop."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tests import reference
from tests.ops.roi_pool_cases import random_rois


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


def roi_pool_loops(features, rois, output_size, spatial_scale, sampling_ratio, aligned,
                   offsets=None, mask=None, gamma=0.1):
    """Deformable RoI pooling with one Python loop per index, float64: RoIAlign
    (torchvision's definition) whose bin `(ph, pw)` moves by
    `gamma * (roi_h * dy, roi_w * dx)` and is scaled by `mask`."""
    features = np.asarray(features, np.float64)
    _, height, width, channels = features.shape
    oh, ow = output_size
    out = np.zeros((len(rois), oh, ow, channels))

    def read(image, y, x):
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return np.zeros(channels)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(math.floor(y)), int(math.floor(x))
        if y0 >= height - 1:
            y0 = y1 = height - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= width - 1:
            x0 = x1 = width - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * image[y0, x0] + (1 - ly) * lx * image[y0, x1]
                + ly * (1 - lx) * image[y1, x0] + ly * lx * image[y1, x1])

    for r, (b, x1, y1, x2, y2) in enumerate(np.asarray(rois, np.float64)):
        shift = 0.5 if aligned else 0.0
        start_x, start_y = x1 * spatial_scale - shift, y1 * spatial_scale - shift
        roi_w, roi_h = (x2 - x1) * spatial_scale, (y2 - y1) * spatial_scale
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / oh, roi_w / ow
        grid_h = sampling_ratio if sampling_ratio > 0 else max(math.ceil(bin_h), 1)
        grid_w = sampling_ratio if sampling_ratio > 0 else max(math.ceil(bin_w), 1)
        for ph in range(oh):
            for pw in range(ow):
                dy, dx = (0.0, 0.0) if offsets is None else offsets[r, ph, pw]
                total = np.zeros(channels)
                for iy in range(grid_h):
                    y = start_y + ph * bin_h + (iy + 0.5) * bin_h / grid_h + gamma * roi_h * dy
                    for ix in range(grid_w):
                        x = (start_x + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                             + gamma * roi_w * dx)
                        total += read(features[int(b)], y, x)
                scale = 1.0 if mask is None else mask[r, ph, pw, 0]
                out[r, ph, pw] = total / (grid_h * grid_w) * scale
    return out


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio,spatial_scale",
                         [(2, 0.5), (0, 0.25), (1, 1.0), (3, 0.125)])
def test_roi_pool_without_offsets_is_roi_align_by_loops(aligned, sampling_ratio,
                                                        spatial_scale, rng):
    features = rng.normal(size=(2, 8, 10, 3))
    rois = random_rois(rng, 5, 2, 8 / spatial_scale, 10 / spatial_scale)
    rois[0] = [1, 0.0, 0.0, 10 / spatial_scale, 8 / spatial_scale]  # the whole image
    rois[1, 3] = rois[1, 1]  # zero width
    kwargs = dict(output_size=(3, 4), spatial_scale=spatial_scale,
                  sampling_ratio=sampling_ratio, aligned=aligned)
    np.testing.assert_allclose(reference.deform_roi_pool(features, rois, **kwargs),
                               roi_pool_loops(features, rois, **kwargs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_pool_offsets_and_mask_match_loops(aligned, sampling_ratio, rng):
    features = rng.normal(size=(2, 8, 10, 3))
    rois = random_rois(rng, 4, 2, 16, 20)
    offsets = rng.normal(size=(4, 3, 2, 2))
    mask = rng.uniform(size=(4, 3, 2, 1))
    kwargs = dict(output_size=(3, 2), spatial_scale=0.5, sampling_ratio=sampling_ratio,
                  aligned=aligned, gamma=0.25)  # exact in float32, as the op reads it
    np.testing.assert_allclose(
        reference.deform_roi_pool(features, rois, offsets, mask, **kwargs),
        roi_pool_loops(features, rois, offsets=offsets, mask=mask, **kwargs),
        rtol=1e-12, atol=1e-12)
