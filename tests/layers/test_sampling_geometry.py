"""The deformable layers' sampling geometry and sampling hook (`SamplingHookMixin`):
`DeformConv2D.sampling_points` and `DeformRoIPool.bin_centres` are where the ops read,
checked through the ops themselves on coordinate ramps; a hook sees the branch's
offsets and mask and what it returns is what the op uses, in Keras 3 and tf_keras."""

import numpy as np
import pytest
import tensorflow as tf

import keras_dcn
from keras_dcn import tf_keras as tfk_layers
from keras_dcn.layers import DeformConv2D, DeformRoIPool

RNG = np.random.default_rng(5)


def _ramps(height, width):
    """`[1, H, W, 2]`: channel 0 holds the row index, channel 1 the column index."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, cols], -1)[None].astype("float64")


@pytest.mark.parametrize("strides, dilation, padding", [
    (1, 1, "same"), (2, 1, "same"), (2, 2, "same"), (1, 2, "valid"), (2, 1, ((2, 0), (1, 3))),
])
def test_sampling_points_are_where_the_op_reads(strides, dilation, padding):
    height, width = 13, 12
    layer = DeformConv2D(2, 3, strides=strides, dilation_rate=dilation, padding=padding,
                         deformable_groups=2, dtype="float64")
    layer.build((1, height, width, 2))
    inputs = _ramps(height, width)
    out_h, out_w = layer.compute_output_shape((1, height, width, 2))[1:3]
    offsets = RNG.uniform(-1.5, 1.5, (1, out_h, out_w, 2 * 2 * 9))
    points = layer.sampling_points(offsets, (height, width)).numpy()
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
def test_bin_centres_are_the_mean_of_the_samples(aligned):
    features = _ramps(20, 24)
    layer = DeformRoIPool(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2,
                          gamma=0.2, aligned=aligned, modulated=False, dtype="float64")
    rois = np.array([[0, 6.0, 8.0, 30.0, 28.0], [0, 13.0, 9.0, 14.0, 9.5]], "float32")
    offsets = RNG.uniform(-0.4, 0.4, (2, 3, 4, 2))
    centres = layer.bin_centres(rois, offsets).numpy()
    pooled = keras_dcn.ops.deform_roi_pool(
        features, rois, offsets, output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2,
        gamma=0.2, aligned=aligned).numpy()
    np.testing.assert_allclose(pooled, centres, atol=1e-5)
    y0, x0, height, width = (v.numpy() for v in layer.roi_boxes(rois))
    shift = 0.5 if aligned else 0.0
    np.testing.assert_allclose(y0, rois[:, 2] * 0.5 - shift)
    np.testing.assert_allclose(x0, rois[:, 1] * 0.5 - shift)
    expected_h = (rois[:, 4] - rois[:, 2]) * 0.5
    np.testing.assert_allclose(height, expected_h if aligned else np.maximum(expected_h, 1))


@pytest.mark.parametrize("conv_class", [DeformConv2D, tfk_layers.DeformConv2D])
def test_conv_hook_sees_the_branch_and_replaces_the_op_inputs(conv_class):
    layer = conv_class(3, 3, padding="same", dtype="float64")
    inputs = RNG.standard_normal((1, 6, 7, 2))
    layer.build(inputs.shape)
    layer.offset_kernel.assign(0.3 * RNG.standard_normal(layer.offset_kernel.shape))
    branch_offsets, branch_mask = layer.offsets_and_mask(tf.constant(inputs))
    replaced = RNG.uniform(-1, 1, branch_offsets.shape)
    seen = []

    def hook(hooked_layer, hooked_inputs, offsets, mask, rois):
        seen.append((hooked_layer, hooked_inputs, offsets, mask, rois))
        return tf.constant(replaced), mask

    layer.set_sampling_hook(hook)
    outputs = layer(inputs).numpy()
    layer.set_sampling_hook(None)
    (hooked_layer, hooked_inputs, offsets, mask, rois), = seen
    assert hooked_layer is layer and rois is None
    np.testing.assert_allclose(hooked_inputs, inputs)
    np.testing.assert_allclose(offsets, branch_offsets)
    np.testing.assert_allclose(mask, branch_mask)
    expected = keras_dcn.ops.deform_conv2d(
        inputs, replaced, layer.kernel, branch_mask, layer.bias, padding="same").numpy()
    np.testing.assert_allclose(outputs, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer(inputs), keras_dcn.ops.deform_conv2d(
        inputs, branch_offsets, layer.kernel, branch_mask, layer.bias, padding="same"),
        rtol=1e-10, atol=1e-10)  # removed: the branch's offsets again


@pytest.mark.parametrize("pool_class", [DeformRoIPool, tfk_layers.DeformRoIPool])
def test_pool_hook_gets_the_rois(pool_class):
    layer = pool_class(output_size=2, hidden_units=4, dtype="float64")
    features = RNG.standard_normal((1, 8, 8, 3))
    rois = np.array([[0, 1.0, 1.0, 6.0, 7.0]], "float32")
    replaced = np.full((1, 2, 2, 2), 0.25)
    seen = []

    def hook(hooked_layer, hooked_features, offsets, mask, hooked_rois):
        seen.append(hooked_rois)
        assert offsets.shape == (1, 2, 2, 2) and mask.shape == (1, 2, 2, 1)
        return tf.constant(replaced), mask

    layer.set_sampling_hook(hook)
    outputs = layer(features, rois).numpy()
    np.testing.assert_allclose(seen[0], rois)
    expected = keras_dcn.ops.deform_roi_pool(features, rois, replaced,
                                             np.full((1, 2, 2, 1), 0.5), output_size=2)
    np.testing.assert_allclose(outputs, expected, rtol=1e-10, atol=1e-10)


def test_hook_must_be_callable():
    with pytest.raises(ValueError, match="hook must be a callable"):
        DeformConv2D(2, 3).set_sampling_hook("not a function")
