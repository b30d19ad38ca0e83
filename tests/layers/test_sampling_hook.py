"""The deformable layers' sampling hook (`set_sampling_hook`): a hook sees the branch's
offsets and mask (and the RoIs) and what it returns is what the op uses, in Keras 3 and
tf_keras."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn import tf_keras as tfk_layers
from keras_dcn.layers import DeformConv2D, DeformRoIPool
from tests import reference
from tests.layers import helpers


@pytest.mark.parametrize("conv_class", [DeformConv2D, tfk_layers.DeformConv2D])
def test_conv_hook_sees_the_branch_and_replaces_the_op_inputs(conv_class, rng):
    """The hook gets the layer, its inputs and the branch's offsets and mask (computed
    here in numpy from the layer's weights); the layer's output is Eq. 1 (the plain-TF
    reference) on the offsets the hook returns, and on the branch's once it is
    removed."""
    layer = conv_class(3, 3, padding="same", dtype="float64")
    inputs = rng.standard_normal((1, 6, 7, 2))
    layer.build(inputs.shape)
    layer.offset_kernel.assign(0.3 * rng.standard_normal(layer.offset_kernel.shape))
    layer.offset_bias.assign(0.3 * rng.standard_normal(layer.offset_bias.shape))
    weights = {name: getattr(layer, name).numpy()
               for name in ("kernel", "bias", "offset_kernel", "offset_bias")}
    pads = (1, 1, 1, 1)  # "same" for a 3 x 3 kernel
    branch_offsets, branch_mask = helpers.conv_offsets_and_mask(inputs, weights, (1, 1),
                                                                pads)
    replaced = rng.uniform(-1, 1, branch_offsets.shape)
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
    np.testing.assert_allclose(offsets, branch_offsets, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mask, branch_mask, rtol=1e-10, atol=1e-12)

    def eq1(offsets):
        return reference.deform_conv2d(inputs, offsets, weights["kernel"], branch_mask,
                                       weights["bias"], pads=pads).numpy()

    np.testing.assert_allclose(outputs, eq1(replaced), rtol=1e-10, atol=1e-10)
    unhooked = layer(inputs).numpy()
    np.testing.assert_allclose(unhooked, eq1(branch_offsets), rtol=1e-10, atol=1e-10)
    assert np.abs(outputs - unhooked).max() > 0.1  # the replacement made a difference


@pytest.mark.parametrize("pool_class", [DeformRoIPool, tfk_layers.DeformRoIPool])
def test_pool_hook_gets_the_rois(pool_class, rng):
    layer = pool_class(output_size=2, hidden_units=4, dtype="float64")
    features = rng.standard_normal((1, 8, 8, 3))
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
    # A fresh layer's branch gives zero offsets and mask 0.5.
    expected = reference.deform_roi_pool(features, rois, replaced,
                                         np.full((1, 2, 2, 1), 0.5), output_size=(2, 2))
    np.testing.assert_allclose(outputs, expected, rtol=1e-10, atol=1e-10)


def test_hook_must_be_callable():
    with pytest.raises(ValueError, match="hook must be a callable"):
        DeformConv2D(2, 3).set_sampling_hook("not a function")
