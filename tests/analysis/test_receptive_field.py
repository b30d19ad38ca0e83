"""keras_dcn.analysis.receptive_field: the gradient of the node's summed response with
respect to each pixel, against the closed form of a linear convolution."""

import keras
import numpy as np
import pytest

from keras_dcn import analysis
from keras_dcn.analysis import receptive_field


def _linear_conv_model(kernel):
    inputs = keras.Input((9, 10, kernel.shape[2]))
    conv = keras.layers.Conv2D(kernel.shape[3], kernel.shape[:2], padding="same",
                               use_bias=False, name="conv")
    model = keras.Model(inputs, conv(inputs))
    conv.kernel.assign(kernel)
    return model


def test_linear_convolution_field_is_its_summed_kernel(rng):
    kernel = rng.standard_normal((3, 3, 3, 4)).astype("float32")
    model = _linear_conv_model(kernel)
    image = rng.uniform(0, 1, (9, 10, 3)).astype("float32")
    row, col = 4, 6
    node = analysis.spatial_node(model, "conv", (row, col))
    gradient = receptive_field.receptive_field_gradient(node, image)

    # d sum_f y[row, col, f] / d x[row + i - 1, col + j - 1, c] = sum_f w[i, j, c, f]
    expected = np.zeros((9, 10, 3), np.float32)
    expected[row - 1:row + 2, col - 1:col + 2] = kernel.sum(axis=-1)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-6)

    field = analysis.effective_receptive_field(node, image)
    magnitude = np.linalg.norm(expected, axis=-1)
    np.testing.assert_allclose(field, magnitude / magnitude.max(), rtol=1e-5, atol=1e-6)
    assert field.max() == pytest.approx(1.0)


def test_field_matches_finite_differences_of_a_nonlinear_node(rng):
    image = rng.uniform(0, 1, (5, 6, 2))

    def node(images):
        return keras.ops.tanh(images[0, 1:4, 2:5] * 3.0)[..., 0] ** 2

    gradient = receptive_field.receptive_field_gradient(node, image)
    numeric = np.zeros_like(image)
    for index in np.ndindex(image.shape):
        step = np.zeros_like(image)
        step[index] = 1e-3
        plus = float(np.sum(node(image[None] + step[None])))
        minus = float(np.sum(node(image[None] - step[None])))
        numeric[index] = (plus - minus) / 2e-3
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=1e-4)


def test_node_ignoring_the_image_has_an_empty_field():
    field = analysis.effective_receptive_field(lambda images: keras.ops.ones((3,)),
                                               np.zeros((4, 4, 3)))
    np.testing.assert_array_equal(field, np.zeros((4, 4)))


def test_bad_image_shape_is_rejected():
    with pytest.raises(ValueError, match=r"image must have shape \[H, W, C\]"):
        analysis.effective_receptive_field(lambda images: images[0, 0, 0], np.zeros((4, 4)))
