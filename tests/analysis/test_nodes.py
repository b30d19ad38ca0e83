"""keras_dcn.analysis.nodes: a layer's output at one position, for Keras 3 and tf_keras
models; the deformable layers of a model, nested ones included."""

import keras
import numpy as np
import pytest
import tf_keras

from keras_dcn import analysis
from keras_dcn import layers as dcn_layers
from keras_dcn import tf_keras as tfk_layers


def test_spatial_node_is_the_layer_output_at_the_position_keras3(rng):
    inputs = keras.Input((8, 8, 3))
    hidden = dcn_layers.DeformConv2D(4, 3, padding="same", name="deform")(inputs)
    outputs = keras.layers.Conv2D(5, 3, strides=2, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    image = rng.standard_normal((1, 8, 8, 3)).astype("float32")
    node = analysis.spatial_node(model, "head", (2, 1))
    np.testing.assert_allclose(node(image), model(image)[0, 2, 1], rtol=1e-6)
    inner = analysis.spatial_node(model, model.get_layer("deform"), (7, 0))
    sub = keras.Model(inputs, hidden)
    np.testing.assert_allclose(inner(image), sub(image)[0, 7, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="outside the 3 x 3 output"):
        analysis.spatial_node(model, "head", (3, 0))(image)


def test_spatial_node_and_layers_tf_keras(rng):
    inputs = tf_keras.Input((6, 6, 2))
    block = tf_keras.Sequential([tfk_layers.DeformConv2D(3, 3, padding="same")],
                                name="block")
    outputs = tfk_layers.DeformConv2D(2, 3, name="top")(block(inputs))
    model = tf_keras.Model(inputs, outputs)
    image = rng.standard_normal((1, 6, 6, 2)).astype("float32")
    node = analysis.spatial_node(model, "top", (1, 3))
    np.testing.assert_allclose(node(image), model(image)[0, 1, 3], rtol=1e-6)
    found = analysis.deformable_layers(model)
    assert [layer.name for layer in found] == [block.layers[0].name, "top"]


def test_bad_arguments():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match=r"position must be a pair"):
        analysis.spatial_node(model, "d", 3)
    with pytest.raises(ValueError, match="model must be a Keras 3 or tf_keras Model"):
        analysis.spatial_node(object(), "d", (0, 0))
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="flat")])
    with pytest.raises(ValueError, match=r"must be \[1, h, w, C\]"):
        analysis.spatial_node(flat, "flat", (0, 0))(np.zeros((1, 4), "float32"))
