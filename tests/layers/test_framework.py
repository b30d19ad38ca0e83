"""keras_dcn.layers._framework and its bindings (`_keras.KERAS`, `tf_keras.TF_KERAS`):
layer names numbered as Keras numbers its own, the default data format read from each
framework's configuration, and the plain values made of tracked structures."""

import keras
import pytest
import tensorflow as tf
import tf_keras

from keras_dcn import tf_keras as tfk_layers
from keras_dcn.layers import _framework
from keras_dcn.layers import _keras


@pytest.mark.parametrize("binding", [_keras.KERAS, tfk_layers.TF_KERAS],
                         ids=["keras", "tf_keras"])
def test_unique_names_count_up_like_keras(binding):
    prefix = "framework_test_layer"  # a name no other layer takes
    assert [binding.unique_name(prefix) for _ in range(3)] == [
        prefix, f"{prefix}_1", f"{prefix}_2"]


@pytest.mark.parametrize("binding, config", [
    (_keras.KERAS, keras.config), (tfk_layers.TF_KERAS, tf_keras.backend)],
    ids=["keras", "tf_keras"])
def test_default_data_format_is_the_frameworks(binding, config):
    previous = config.image_data_format()
    config.set_image_data_format("channels_first")
    try:
        assert binding.data_format(None) == "channels_first"
    finally:
        config.set_image_data_format(previous)
    assert binding.data_format(None) == previous
    assert binding.data_format("Channels_Last") == "channels_last"
    with pytest.raises(ValueError, match="data_format"):
        binding.data_format("NHWC")


def test_keras_binding_checks_the_backend(monkeypatch):
    _keras.KERAS.check("DeformConv2D")  # the TensorFlow backend: no error
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(RuntimeError, match="keras_dcn.layers.DeformConv2D needs"):
        _keras.KERAS.check("DeformConv2D")
    tfk_layers.TF_KERAS.check("DeformConv2D")  # tf_keras runs on TensorFlow only


def test_plain_values_and_shape_lists():
    tracked = tf_keras.layers.Layer()
    tracked.sizes = [[1, 2], (3, [4])]  # wrapped in tf_keras' tracking lists
    assert _framework.plain(tracked.sizes) == ((1, 2), (3, (4,)))
    assert _framework.plain("same") == "same" and _framework.plain(None) is None
    assert _framework.shape_list(tf.TensorShape([None, 5, 6])) == [None, 5, 6]
    assert _framework.shape_list((2, 3)) == [2, 3]
