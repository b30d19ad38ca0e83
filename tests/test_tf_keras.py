"""keras_dcn.tf_keras: the same layers on tf_keras (Keras 2) compute what the layers
compute written out without them (numpy branches, plain-TF ops), and what the Keras 3
layers compute for the same weights; they train with the branch's gradient scaled,
serialize and follow mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import keras_dcn.layers
import keras_dcn.tf_keras
from keras_dcn.layers import _deform_conv_base
from keras_dcn.layers import _deform_roi_pool_base
from tests.layers import helpers

ROIS = np.array([[0, 1.0, 2.0, 11.0, 9.5], [1, 0.0, 0.0, 12.0, 12.0]], "float32")


@pytest.fixture
def images(rng):
    """Two 12 x 12 images of 4 channels, channels_last."""
    return rng.standard_normal((2, 12, 12, 4)).astype("float32")


def _random_weights(rng, layer, scale=0.3):
    return [rng.normal(0.0, scale, w.shape) for w in layer.weights]


def _short_name(weight):
    return weight.name.split("/")[-1].split(":")[0]


def _to_first(x):
    return np.transpose(x, (0, 3, 1, 2))


def _to_last(x):
    return np.transpose(x, (0, 2, 3, 1))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_deform_conv2d_matches_an_independent_computation_and_keras3(
        data_format, images, rng):
    """Strides 2, "same" padding, conv groups, deformable groups and ReLU: the tf_keras
    layer gives ReLU(branch in numpy -> Eq. 1 by the plain-TF reference), in float64;
    the Keras 3 layer has the same weights (names, shapes) and gives the same output."""
    kwargs = dict(filters=6, kernel_size=3, strides=2, padding="same", groups=2,
                  deformable_groups=2, activation="relu", data_format=data_format,
                  dtype="float64")
    inputs = images.astype("float64")
    if data_format == "channels_first":
        inputs = _to_first(inputs)
    new = keras_dcn.layers.DeformConv2D(**kwargs)
    old = keras_dcn.tf_keras.DeformConv2D(**kwargs)
    new.build(inputs.shape)
    old.build(inputs.shape)
    assert [_short_name(w) for w in old.weights] == [w.name for w in new.weights]
    assert [tuple(w.shape) for w in old.weights] == [tuple(w.shape) for w in new.weights]
    weights = _random_weights(rng, new)
    new.set_weights(weights)
    old.set_weights(weights)

    got = old(inputs).numpy()
    if data_format == "channels_first":
        got = _to_last(got)
    # "same" for 12 x 12, a 3 x 3 kernel and strides 2: one row / column after.
    expected = np.maximum(helpers.independent_deform_conv(
        images.astype("float64"), dict(zip((w.name for w in new.weights), weights)),
        strides=(2, 2), pads=(0, 1, 0, 1), groups=2, deformable_groups=2), 0)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert (expected > 0).mean() > 0.2  # not all cut away by the ReLU
    np.testing.assert_array_equal(old(inputs).numpy(), keras.ops.convert_to_numpy(new(inputs)))
    assert tuple(old.compute_output_shape(inputs.shape)) == new.compute_output_shape(inputs.shape)


@pytest.mark.parametrize("modulated", [True, False])
def test_deform_roi_pool_matches_an_independent_computation_and_keras3(
        modulated, images, rng):
    """The tf_keras layer gives Eq. 2 with the sibling branch written out in numpy, in
    float64; the Keras 3 layer has the same weights and gives the same output."""
    pool_args = dict(output_size=(3, 2), spatial_scale=0.5, sampling_ratio=2, gamma=0.1,
                     aligned=True)
    kwargs = dict(hidden_units=8, modulated=modulated, dtype="float64", **pool_args)
    features = images.astype("float64")
    new = keras_dcn.layers.DeformRoIPool(**kwargs)
    old = keras_dcn.tf_keras.DeformRoIPool(**kwargs)
    new(features, ROIS)
    old(features, ROIS)
    assert [_short_name(w) for w in old.weights] == [w.name for w in new.weights]
    first, second = (getattr(old, f"hidden{i}_kernel").numpy().ravel()[:64] for i in (1, 2))
    assert not np.allclose(first, second)  # one unseeded initializer, two draws
    weights = _random_weights(rng, new, scale=0.5)
    new.set_weights(weights)
    old.set_weights(weights)

    expected = helpers.independent_deform_roi_pool(
        features, ROIS, dict(zip((w.name for w in new.weights), weights)), modulated,
        **pool_args)
    np.testing.assert_allclose(old(features, ROIS).numpy(), expected, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_array_equal(old(features, ROIS).numpy(),
                                  keras.ops.convert_to_numpy(new(features, ROIS)))


@pytest.mark.parametrize("base, flavours", [
    (_deform_conv_base.DeformConv2DBase,
     (keras_dcn.layers.DeformConv2D, keras_dcn.tf_keras.DeformConv2D)),
    (_deform_roi_pool_base.DeformRoIPoolBase,
     (keras_dcn.layers.DeformRoIPool, keras_dcn.tf_keras.DeformRoIPool))],
    ids=["DeformConv2D", "DeformRoIPool"])
def test_both_flavours_run_one_shared_body(base, flavours):
    """What the layer computes and stores comes from the one body, in both flavours,
    which differ only in their framework binding."""
    for flavour in flavours:
        names = ["__init__", "build", "offsets_and_mask", "call", "compute_output_shape",
                 "get_config"]
        if base is _deform_roi_pool_base.DeformRoIPoolBase:
            names += ["offsets_and_mask_of_pooled", "pool_deformed"]
        for name in names:
            assert getattr(flavour, name) is getattr(base, name), (flavour, name)
    assert flavours[0]._framework is not flavours[1]._framework


def _tf_keras_model():
    images = tf_keras.Input((12, 12, 4))
    rois = tf_keras.Input((5,))
    features = keras_dcn.tf_keras.DeformConv2D(4, 3, padding="same", activation="relu")(images)
    pooled = keras_dcn.tf_keras.DeformRoIPool(output_size=2, hidden_units=8)(features, rois)
    return tf_keras.Model([images, rois], pooled)


def test_tf_keras_model_trains_a_step(images, rng):
    model = _tf_keras_model()
    model.compile(tf_keras.optimizers.SGD(0.1), "mse")
    target = rng.standard_normal((2, 2, 2, 4)).astype("float32")
    conv = model.layers[1]
    conv.offset_kernel.assign(rng.standard_normal(conv.offset_kernel.shape) * 0.1)
    before = [w.numpy() for w in model.weights]
    loss = model.train_on_batch([images, ROIS], target)
    assert np.isfinite(loss)
    changed = [np.any(b != w.numpy()) for b, w in zip(before, model.weights)]
    # The RoI branch's zero-initialised offset layer gets gradient from the first step;
    # every conv weight moves.
    assert all(changed[:4]) and changed[-2]


def test_tf_keras_gradients_with_the_branch_scaled(images, rng):
    """The tf_keras layer's gradients equal central differences of the independent
    computation, the offset branch's times `offset_lr_multiplier`."""
    multiplier, strides, pads = 0.1, (1, 1), (0, 0, 0, 0)  # "valid"
    inputs = images[:, :7, :7].astype("float64")
    layer = keras_dcn.tf_keras.DeformConv2D(3, 3, offset_lr_multiplier=multiplier,
                                            dtype="float64")
    layer.build(inputs.shape)
    for weight in layer.weights:
        scale = 0.15 if _short_name(weight) == "offset_kernel" else 0.5
        weight.assign(rng.normal(0.0, scale, weight.shape))
    weights = {_short_name(w): w.numpy() for w in layer.weights}

    def independent(inputs, weights):
        return helpers.independent_deform_conv(inputs, weights, strides, pads)

    cotangent = rng.standard_normal(independent(inputs, weights).shape)
    tensor = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        loss = tf.reduce_sum(layer(tensor) * cotangent)
    grads = tape.gradient(loss, [tensor] + layer.weights)
    helpers.assert_layer_gradients(
        grads, inputs, weights, independent, cotangent, rng,
        {"offset_kernel": multiplier, "offset_bias": multiplier})


@pytest.mark.parametrize("cls", [keras_dcn.tf_keras.DeformConv2D, keras_dcn.tf_keras.DeformRoIPool])
def test_registered_in_tf_keras(cls):
    name = f"keras_dcn>{cls.__name__}"
    assert tf_keras.utils.get_registered_name(cls) == name
    assert tf_keras.utils.get_registered_object(name) is cls
    layer = cls(4, 3) if cls.__name__ == "DeformConv2D" else cls(output_size=2, hidden_units=8)
    clone = tf_keras.layers.deserialize(tf_keras.layers.serialize(layer))
    assert type(clone) is cls and clone.get_config() == layer.get_config()


def test_tf_keras_save_and_load(tmp_path, images):
    model = _tf_keras_model()
    expected = model([images, ROIS]).numpy()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf_keras.models.load_model(path)
    np.testing.assert_array_equal(loaded([images, ROIS]).numpy(), expected)


def test_tf_keras_mixed_precision(images):
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        conv = keras_dcn.tf_keras.DeformConv2D(4, 3)
        pool = keras_dcn.tf_keras.DeformRoIPool(output_size=2, hidden_units=8)
        assert conv(images).dtype == tf.float16
        assert pool(images, ROIS).dtype == tf.float16
        for weight in conv.weights + pool.weights:
            assert weight.dtype == tf.float32
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
