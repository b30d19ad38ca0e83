"""keras_dcn.analysis.geometry: `sampling_points` and `bin_centres` are where the ops
read, checked through the ops themselves on coordinate ramps; `roi_boxes` are the RoIs
on the feature map."""

import numpy as np
import pytest

import keras_dcn
from keras_dcn import tf_keras as tfk_layers
from keras_dcn.analysis import geometry
from keras_dcn.layers import DeformConv2D, DeformRoIPool


def _ramps(height, width):
    """`[1, H, W, 2]`: channel 0 holds the row index, channel 1 the column index."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, cols], -1)[None].astype("float64")


@pytest.mark.parametrize("strides, dilation, padding", [
    (1, 1, "same"), (2, 1, "same"), (2, 2, "same"), (1, 2, "valid"), (2, 1, ((2, 0), (1, 3))),
])
def test_sampling_points_are_where_the_op_reads(strides, dilation, padding, rng):
    height, width = 13, 12
    layer = DeformConv2D(2, 3, strides=strides, dilation_rate=dilation, padding=padding,
                         deformable_groups=2, dtype="float64")
    layer.build((1, height, width, 2))
    inputs = _ramps(height, width)
    out_h, out_w = layer.compute_output_shape((1, height, width, 2))[1:3]
    offsets = rng.uniform(-1.5, 1.5, (1, out_h, out_w, 2 * 2 * 9))
    points = geometry.sampling_points(layer, offsets, (height, width)).numpy()
    assert points.shape == (1, out_h, out_w, 18, 2)
    for group in range(2):
        for tap in range(9):
            # A one-hot kernel: group g's channel (row ramp for g=0, column ramp for
            # g=1) through tap k only; a ramp interpolates to its coordinate exactly.
            kernel = np.zeros((3, 3, 2, 2))
            kernel[tap // 3, tap % 3, group, group] = 1.0
            read = keras_dcn.ops.deform_conv2d(
                inputs, offsets, kernel, strides=strides, padding=padding,
                dilation_rate=dilation, deformable_groups=2).numpy()[0, ..., group]
            expected = points[0, :, :, group * 9 + tap, group]
            other = points[0, :, :, group * 9 + tap, 1 - group]
            size = (height, width)[group]
            other_size = (width, height)[group]
            inside = ((expected >= 0) & (expected <= size - 1)
                      & (other >= 0) & (other <= other_size - 1))
            assert inside.any()
            np.testing.assert_allclose(read[inside], expected[inside], atol=1e-9)


@pytest.mark.parametrize("aligned", [True, False])
def test_bin_centres_are_the_mean_of_the_samples(aligned, rng):
    features = _ramps(20, 24)
    layer = DeformRoIPool(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2,
                          gamma=0.2, aligned=aligned, modulated=False, dtype="float64")
    rois = np.array([[0, 6.0, 8.0, 30.0, 28.0], [0, 13.0, 9.0, 14.0, 9.5]], "float32")
    offsets = rng.uniform(-0.4, 0.4, (2, 3, 4, 2))
    centres = geometry.bin_centres(layer, rois, offsets).numpy()
    pooled = keras_dcn.ops.deform_roi_pool(
        features, rois, offsets, output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2,
        gamma=0.2, aligned=aligned).numpy()
    np.testing.assert_allclose(pooled, centres, atol=1e-5)
    y0, x0, height, width = (v.numpy() for v in geometry.roi_boxes(layer, rois))
    shift = 0.5 if aligned else 0.0
    np.testing.assert_allclose(y0, rois[:, 2] * 0.5 - shift)
    np.testing.assert_allclose(x0, rois[:, 1] * 0.5 - shift)
    expected_h = (rois[:, 4] - rois[:, 2]) * 0.5
    np.testing.assert_allclose(height, expected_h if aligned else np.maximum(expected_h, 1))


def test_layers_of_either_framework_give_the_same_geometry(rng):
    conv_args = dict(filters=2, kernel_size=(3, 2), strides=2, padding="same",
                     dilation_rate=(1, 2), deformable_groups=2)
    offsets = rng.uniform(-1.5, 1.5, (2, 4, 3, 2 * 2 * 6))
    keras_points, tf_keras_points = (
        geometry.sampling_points(layer_class(**conv_args), offsets, (7, 6)).numpy()
        for layer_class in (DeformConv2D, tfk_layers.DeformConv2D))
    np.testing.assert_array_equal(keras_points, tf_keras_points)

    pool_args = dict(output_size=(2, 3), spatial_scale=0.25, gamma=0.3, aligned=False)
    rois = np.array([[0, 3.0, 5.0, 40.0, 21.0], [1, 7.0, 7.0, 7.5, 9.0]], "float32")
    offsets = rng.uniform(-0.5, 0.5, (2, 2, 3, 2))
    keras_centres, tf_keras_centres = (
        geometry.bin_centres(layer_class(**pool_args), rois, offsets).numpy()
        for layer_class in (DeformRoIPool, tfk_layers.DeformRoIPool))
    np.testing.assert_array_equal(keras_centres, tf_keras_centres)
