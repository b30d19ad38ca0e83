"""keras_dcn.layers._framework and its bindings (`_keras.KERAS`, `tf_keras.TF_KERAS`):
layer names numbered as Keras numbers its own, the default data format read from each
framework's configuration, the namespace, ops and implementations of Keras' backend,
and the plain values made of tracked structures."""

import keras
import pytest
import tensorflow as tf
import tf_keras

from keras_dcn import ops as dcn_ops
from keras_dcn import tf_keras as tfk_layers
from keras_dcn.layers import _framework
from keras_dcn.layers import _keras
from keras_dcn.ops import _array_namespace
from keras_dcn.ops import _keras_composite


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


def test_backend_picks_namespace_ops_and_implementations(monkeypatch):
    assert _keras.KERAS.xp is _array_namespace.TENSORFLOW
    assert _keras.KERAS.ops is dcn_ops
    assert _keras.KERAS.implementation("custom") == "custom"
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    assert _keras.KERAS.xp is _array_namespace.KERAS
    assert _keras.KERAS.ops is _keras_composite
    assert _keras.KERAS.implementation("composite") == "composite"
    assert _keras.KERAS.supports_jit("auto")
    with pytest.raises(ValueError, match=r"implementation='custom' needs Keras' TensorFlow "
                                         r"backend .* 'torch' backend; use 'auto'"):
        _keras.KERAS.implementation("custom")
    with pytest.raises(ValueError, match="implementation must be one of"):
        _keras.KERAS.implementation("cuda")
    # tf_keras runs on TensorFlow whatever Keras 3's backend.
    assert tfk_layers.TF_KERAS.ops is dcn_ops
    assert tfk_layers.TF_KERAS.implementation("custom") == "custom"


def test_plain_values_and_shape_lists():
    tracked = tf_keras.layers.Layer()
    tracked.sizes = [[1, 2], (3, [4])]  # wrapped in tf_keras' tracking lists
    assert _framework.plain(tracked.sizes) == ((1, 2), (3, (4,)))
    assert _framework.plain("same") == "same" and _framework.plain(None) is None
    assert _framework.shape_list(tf.TensorShape([None, 5, 6])) == [None, 5, 6]
    assert _framework.shape_list((2, 3)) == [2, 3]
