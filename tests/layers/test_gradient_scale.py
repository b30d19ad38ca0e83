"""The offset branches' learning rate (`keras_dcn.layers._gradient_scale`): the gradient
scaling itself, and the one check of `offset_lr_multiplier` that both layers of both
frameworks apply."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn import tf_keras as tfk_layers
from keras_dcn.layers import DeformConv2D, DeformRoIPool
from keras_dcn.layers._gradient_scale import lr_multiplier, scale_gradient
from keras_dcn.ops._array_namespace import TENSORFLOW


@pytest.mark.parametrize("dtype", [tf.float16, tf.float32, tf.float64])
@pytest.mark.parametrize("multiplier", [0.1, 0.0, 2.5])
def test_identity_forward_scaled_gradient_backward(multiplier, dtype, rng):
    x = tf.constant(rng.normal(size=(3, 4)), dtype)
    upstream = tf.constant(rng.normal(size=(3, 4)), dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = scale_gradient(TENSORFLOW, x, multiplier)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    gradient = tape.gradient(y, x, output_gradients=upstream)
    assert gradient.dtype == dtype
    np.testing.assert_array_equal(gradient.numpy(),
                                  (upstream * tf.constant(multiplier, dtype)).numpy())


def test_multiplier_one_adds_no_op():
    x = tf.constant([1.0, 2.0])
    assert scale_gradient(TENSORFLOW, x, 1.0) is x


@pytest.mark.parametrize("value", [0, 0.1, 1, 7.5])
def test_valid_multipliers_become_floats(value):
    multiplier = lr_multiplier(value)
    assert type(multiplier) is float and multiplier == value


@pytest.mark.parametrize("layer_class", [DeformConv2D, DeformRoIPool, tfk_layers.DeformConv2D,
                                         tfk_layers.DeformRoIPool])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "0.1", None])
def test_bad_multipliers_raise_in_every_layer(value, layer_class):
    args = dict(filters=2, kernel_size=3) if "Conv" in layer_class.__name__ else {}
    with pytest.raises(ValueError, match="offset_lr_multiplier must be"):
        layer_class(offset_lr_multiplier=value, **args)
