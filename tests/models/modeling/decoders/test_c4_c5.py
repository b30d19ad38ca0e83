"""models.modeling.decoders.c4_c5: conv4 passed on for the RPN and conv5 reduced by a
1x1 convolution and ReLU for RoI pooling, against numpy; its decoder-factory entry and
its argument checks."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.modeling.decoders import factory

from models.configs.decoders import Decoder
from models.configs.maskrcnn import DcnMaskRCNN
from models.modeling.decoders.c4_c5 import C4C5Decoder

SPECS = {"2": [None, 16, 16, 8], "3": [None, 8, 8, 8], "4": [None, 4, 4, 12],
         "5": [None, 4, 4, 20]}


def features(seed=0):
    rng = np.random.default_rng(seed)
    return {level: tf.constant(rng.normal(size=[2] + shape[1:]), tf.float32)
            for level, shape in SPECS.items()}


def test_outputs_conv4_and_reduced_conv5():
    decoder = C4C5Decoder(SPECS, num_filters=6)
    inputs = features()
    outputs = decoder(inputs)
    assert sorted(outputs) == ["4", "5"]
    np.testing.assert_array_equal(outputs["4"].numpy(), inputs["4"].numpy())
    kernel, bias = (w.numpy() for w in decoder.weights)
    want = np.maximum(np.einsum("bhwc,cf->bhwf", inputs["5"].numpy(), kernel[0, 0]) + bias, 0)
    np.testing.assert_allclose(outputs["5"].numpy(), want, rtol=1e-5, atol=1e-5)
    assert {k: v.as_list() for k, v in decoder.output_specs.items()} == {
        "4": [None, 4, 4, 12], "5": [None, 4, 4, 6]}


def test_zero_filters_passes_conv5_through():
    decoder = C4C5Decoder(SPECS, num_filters=0)
    inputs = features(1)
    outputs = decoder(inputs)
    assert not decoder.weights
    np.testing.assert_array_equal(outputs["5"].numpy(), inputs["5"].numpy())


def test_config_round_trip_and_regularizer():
    decoder = C4C5Decoder(SPECS, num_filters=4,
                          kernel_regularizer=tf_keras.regularizers.l2(0.5))
    decoder(features())
    assert len(decoder.losses) == 1
    clone = C4C5Decoder.from_config(decoder.get_config())
    assert clone.get_config() == decoder.get_config()


def test_factory_builds_it_from_a_model_config():
    config = DcnMaskRCNN(decoder=Decoder(type="c4_c5"))
    config.decoder.c4_c5.num_filters = 5
    decoder = factory.build_decoder(
        {k: tf.TensorShape(v) for k, v in SPECS.items()}, config)
    assert isinstance(decoder, C4C5Decoder)
    assert decoder.output_specs["5"][-1] == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="needs backbone levels 4 and 5"):
        C4C5Decoder({"4": [None, 4, 4, 8]})
    with pytest.raises(ValueError, match="output_stride 16"):
        C4C5Decoder({"4": [None, 4, 4, 8], "5": [None, 2, 2, 8]})
    with pytest.raises(ValueError, match="num_filters must be >= 0"):
        C4C5Decoder(SPECS, num_filters=-1)
