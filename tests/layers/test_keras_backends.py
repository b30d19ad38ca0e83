"""The Keras 3 layers on whichever backend Keras runs (KERAS_BACKEND): TensorFlow with
the op library, JAX and PyTorch with the ops' composites in `keras.ops`.

The suite runs this module once per backend (`make test`). Outputs and gradients
are checked against the plain-TF references of `tests.layers.helpers` (numpy arrays
in, numpy arrays out, whatever the backend), gradients against central differences
in float64; then `fit`, saving and loading, mixed precision and the errors each
backend owes.
"""

import os

import keras
import numpy as np
import pytest

from keras_dcn.layers import DeformConv2D, DeformRoIPool
from tests import reference
from tests.keras_backend import BACKEND, numpy, output_and_gradients
from tests.layers import helpers

ROIS = np.array([
    [0, 2.0, 3.0, 25.0, 20.0],
    [1, 0.0, 0.0, 31.0, 31.0],
    [1, 10.5, 4.0, 14.0, 30.0],
], "float32")


def test_runs_on_the_requested_backend():
    requested = os.environ.get("KERAS_BACKEND")
    assert requested in (None, BACKEND)


def _outputs_and_gradients(layer, inputs, cotangent, *more_inputs):
    """The layer's outputs on `inputs` (and `more_inputs`, held constant) and the
    gradients of `sum(outputs * cotangent)` with respect to `inputs` and then each
    trainable weight, as numpy arrays, by the backend's own differentiation."""
    frozen = [v.value for v in layer.non_trainable_variables]

    def outputs(x, *weights):
        return layer.stateless_call(list(weights), frozen, x, *more_inputs)[0]

    args = [keras.ops.convert_to_tensor(inputs)] + [
        v.value for v in layer.trainable_variables]
    return output_and_gradients(outputs, args, cotangent)


@pytest.mark.parametrize("modulated", [True, False])
@pytest.mark.parametrize("layer_args, pads", [
    (dict(kernel_size=3, strides=(2, 1), padding="same", deformable_groups=2),
     (1, 1, 1, 1)),
    (dict(kernel_size=(3, 2), padding=((1, 0), (2, 1)), dilation_rate=2, groups=2),
     (1, 0, 2, 1)),
], ids=["same-strided", "explicit-dilated-groups"])
def test_deform_conv2d_values_and_gradients(layer_args, pads, modulated, rng):
    """inputs -> offset conv -> offsets (and sigmoid mask) -> Eq. 1, computed without
    the layer: its outputs, and its gradients against central differences, the
    branch's scaled by `offset_lr_multiplier`."""
    multiplier = 0.25
    inputs = rng.standard_normal((2, 7, 7, 4))
    layer = DeformConv2D(4, modulated=modulated, offset_lr_multiplier=multiplier,
                         dtype="float64", **layer_args)
    layer.build(inputs.shape)
    for weight in layer.weights:
        scale = 0.15 if weight.name == "offset_kernel" else 0.5  # offsets of ~1 pixel
        weight.assign(rng.normal(0.0, scale, weight.shape))
    weights = {w.name: numpy(w) for w in layer.weights}
    strides = layer.strides

    def independent(inputs, weights):
        return helpers.independent_deform_conv(
            inputs, weights, strides, pads, modulated, groups=layer.groups,
            deformable_groups=layer.deformable_groups, dilations=layer.dilation_rate)

    expected = independent(inputs, weights)
    cotangent = rng.standard_normal(expected.shape)
    outputs, grads = _outputs_and_gradients(layer, inputs, cotangent)
    np.testing.assert_allclose(outputs, expected, rtol=1e-9, atol=1e-12)
    if layer.groups == 1:
        regular = helpers.numpy_conv(inputs, weights["kernel"], weights["bias"], strides,
                                     pads, layer.dilation_rate)
        assert np.abs(expected - regular).max() > 0.1  # the branch matters
    helpers.assert_layer_gradients(
        grads, inputs, weights, independent, cotangent, rng,
        {"offset_kernel": multiplier, "offset_bias": multiplier})


@pytest.mark.parametrize("sampling_ratio", [2, 0])
@pytest.mark.parametrize("modulated", [True, False])
def test_deform_roi_pool_values_and_gradients(modulated, sampling_ratio, rng):
    """features -> RoIAlign -> three fc -> offsets (and sigmoid mask) -> Eq. 2, computed
    without the layer: outputs, and gradients against central differences."""
    multiplier = 0.25
    pool_args = dict(output_size=(2, 3), spatial_scale=0.5, sampling_ratio=sampling_ratio,
                     gamma=0.1, aligned=True)
    features = rng.standard_normal((2, 16, 16, 3))
    layer = DeformRoIPool(hidden_units=6, modulated=modulated,
                          offset_lr_multiplier=multiplier, dtype="float64", **pool_args)
    layer.build(features.shape, ROIS.shape)
    for weight in layer.weights:  # every unit and sign of the ReLUs in play
        weight.assign(rng.normal(0.0, 0.5, weight.shape))
    weights = {w.name: numpy(w) for w in layer.weights}

    def independent(features, weights):
        return helpers.independent_deform_roi_pool(features, ROIS, weights, modulated,
                                                   **pool_args)

    expected = independent(features, weights)
    cotangent = rng.standard_normal(expected.shape)
    outputs, grads = _outputs_and_gradients(layer, features, cotangent,
                                            keras.ops.convert_to_tensor(ROIS))
    np.testing.assert_allclose(outputs, expected, rtol=1e-9, atol=1e-12)
    assert np.abs(expected - reference.deform_roi_pool(features, ROIS, **pool_args)).max() > 0.05
    helpers.assert_layer_gradients(
        grads, features, weights, independent, cotangent, rng,
        {name: multiplier for name in weights})


def test_channels_first_matches_channels_last(rng):
    inputs = rng.standard_normal((2, 9, 8, 4)).astype("float32")
    last = DeformConv2D(6, 3, strides=2, padding="same", data_format="channels_last")
    first = DeformConv2D(6, 3, strides=2, padding="same", data_format="channels_first")
    last.build(inputs.shape)
    first.build((2, 4, 9, 8))
    for a, b in zip(last.weights, first.weights):
        value = rng.normal(0.0, 0.1 if a.name == "offset_kernel" else 0.5, a.shape)
        a.assign(value)
        b.assign(value)
    expected = numpy(last(inputs))
    got = numpy(first(np.transpose(inputs, (0, 3, 1, 2))))
    np.testing.assert_allclose(np.transpose(got, (0, 2, 3, 1)), expected, rtol=1e-5,
                               atol=1e-5)


def _shifted_images(rng, count):
    """Images whose target is the image moved by one pixel to the left: a task that a
    deformable 1x1 convolution learns by moving its tap."""
    images = rng.standard_normal((count, 8, 8, 2)).astype("float32")
    images = np.cumsum(images, axis=2) / 3  # smooth along x, so a move is learnable
    targets = np.roll(images[..., :1], -1, axis=2)
    targets[:, :, -1] = 0
    return images, targets


def test_fit_learns_offsets_and_the_model_saves_and_loads(rng, tmp_path):
    images, targets = _shifted_images(rng, 64)
    layer = DeformConv2D(1, 1, modulated=False, use_bias=False, offset_lr_multiplier=1.0)
    model = keras.Sequential([keras.Input(images.shape[1:]), layer])
    layer.kernel.assign(np.array([1.0, 0.0], "float32").reshape(1, 1, 2, 1))
    model.compile(keras.optimizers.SGD(0.5, momentum=0.9), "mse")
    initial = model.evaluate(images, targets, verbose=0)
    history = model.fit(images, targets, batch_size=16, epochs=6, verbose=0)
    assert history.history["loss"][-1] < 0.5 * initial
    offsets, _ = layer.offsets_and_mask(keras.ops.convert_to_tensor(images))
    assert numpy(offsets)[..., 1].mean() > 0.3  # the tap moved right, towards x + 1

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[0].get_config() == layer.get_config()
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), rtol=1e-6, atol=1e-6)


def test_fit_trains_the_roi_pool_branch(rng):
    """A model that pools one box an image (the rois made in the model from the
    boxes, with each box's position in the batch) trains with `fit` towards the mean
    of each box's RoIAlign (the plain-TF reference): the loss falls and the offset
    branch moves."""
    features = rng.standard_normal((32, 16, 16, 3)).astype("float32")
    corners = rng.uniform(0, 8, size=(32, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(4, 8, (32, 2))], 1)
    boxes = boxes.astype("float32")
    rois_of_all = np.concatenate([np.arange(32)[:, None], boxes], 1)
    aligned = reference.deform_roi_pool(features, rois_of_all, output_size=(2, 2)).numpy()
    targets = aligned.mean(axis=(1, 2, 3))[:, None] * 4
    feature_input = keras.Input((16, 16, 3))
    box_input = keras.Input((4,))

    def rois(boxes):
        index = keras.ops.cast(keras.ops.arange(keras.ops.shape(boxes)[0]), boxes.dtype)
        return keras.ops.concatenate([index[:, None], boxes], axis=1)

    pool = DeformRoIPool(output_size=2, spatial_scale=1.0, hidden_units=8,
                         offset_lr_multiplier=1.0)
    pooled = pool(feature_input, keras.layers.Lambda(rois)(box_input))
    output = keras.layers.Dense(1)(keras.layers.Flatten()(pooled))
    model = keras.Model([feature_input, box_input], output)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    initial = model.evaluate([features, boxes], targets, verbose=0)
    history = model.fit([features, boxes], targets, batch_size=8, epochs=10, verbose=0)
    assert history.history["loss"][-1] < 0.75 * initial
    assert np.abs(numpy(pool.offset_kernel)).max() > 0


def test_roi_pool_model_saves_and_loads(rng, tmp_path):
    features = rng.standard_normal((2, 16, 16, 3)).astype("float32")
    feature_input = keras.Input((16, 16, 3))
    roi_input = keras.Input((5,), batch_size=None)
    pooled = DeformRoIPool(output_size=3, spatial_scale=0.5, hidden_units=8)(
        feature_input, roi_input)
    model = keras.Model([feature_input, roi_input], pooled)
    branch = model.layers[-1]
    branch.offset_kernel.assign(rng.normal(0.0, 0.3, branch.offset_kernel.shape))
    expected = numpy(model([features, ROIS]))
    assert expected.shape == (len(ROIS), 3, 3, 3)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(numpy(loaded([features, ROIS])), expected, rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_follows_float32(policy, rng):
    inputs = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    exact = DeformConv2D(4, 3, padding="same")
    mixed = DeformConv2D(4, 3, padding="same", dtype=policy)
    exact.build(inputs.shape)
    mixed.build(inputs.shape)
    for a, b in zip(exact.weights, mixed.weights):
        value = rng.normal(0.0, 0.1 if a.name == "offset_kernel" else 0.3, a.shape)
        a.assign(value)
        b.assign(value)
    outputs = mixed(inputs)
    assert keras.backend.standardize_dtype(outputs.dtype) == policy.split("_")[1]
    expected = numpy(exact(inputs))
    got = numpy(keras.ops.cast(outputs, "float32"))
    np.testing.assert_allclose(got, expected, rtol=0.05, atol=0.05)
    assert np.abs(expected).max() > 0.5

    pool = DeformRoIPool(output_size=2, hidden_units=4, dtype=policy)
    pooled = pool(inputs, ROIS / 4)  # the rois stay float32 boxes
    assert keras.backend.standardize_dtype(pooled.dtype) == policy.split("_")[1]


@pytest.mark.parametrize("rois, match", [
    ([[2, 0, 0, 4, 4]], r"\(the batch index\) must be a finite number in \[0, (N|2)\)"),
    ([[0, 0, 0, np.nan, 4]], "must have finite coordinates"),
    ([[0, 5, 0, 4, 4]], "must have x1 <= x2 and y1 <= y2"),
])
def test_bad_rois_are_refused(rois, match, rng):
    features = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    layer = DeformRoIPool(output_size=2, hidden_units=4)
    errors = (ValueError,)
    if BACKEND == "tensorflow":  # the kernels check values when they run
        import tensorflow as tf

        errors = (ValueError, tf.errors.InvalidArgumentError)
    with pytest.raises(errors, match=match):
        layer(features, np.array(rois, "float32"))


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the kernels run there")
def test_custom_implementation_is_refused_off_tensorflow():
    for make in (lambda: DeformConv2D(2, 3, implementation="custom"),
                 lambda: DeformRoIPool(implementation="custom")):
        with pytest.raises(ValueError, match=r"implementation='custom' needs Keras' "
                                             rf"TensorFlow backend .* '{BACKEND}' backend"):
            make()


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit traces the rois")
def test_adaptive_grid_is_refused_inside_jit(rng):
    features = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    layer = DeformRoIPool(output_size=2, hidden_units=4, sampling_ratio=0)
    layer(features, ROIS / 4)  # eager: the rois' values are known
    with pytest.raises(ValueError, match="sampling_ratio must be > 0 inside jax.jit"):
        import jax

        jax.jit(lambda f, r: layer(f, r))(features, ROIS / 4)
