"""keras_dcn.tf_keras: the same layers on tf_keras (Keras 2) give the same outputs as
the Keras 3 ones for the same weights, train, serialize and follow mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import keras_dcn.layers
import keras_dcn.tf_keras

RNG = np.random.default_rng(21)
IMAGES = RNG.standard_normal((2, 12, 12, 4)).astype("float32")
ROIS = np.array([[0, 1.0, 2.0, 11.0, 9.5], [1, 0.0, 0.0, 12.0, 12.0]], "float32")


def _random_weights(layer):
    return [RNG.standard_normal(w.shape).astype("float32") * 0.3 for w in layer.weights]


def _short_name(weight):
    return weight.name.split("/")[-1].split(":")[0]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_deform_conv2d_matches_keras3(data_format):
    kwargs = dict(filters=6, kernel_size=3, strides=2, padding="same", groups=2,
                  deformable_groups=2, activation="relu", data_format=data_format)
    inputs = IMAGES if data_format == "channels_last" else IMAGES.transpose(0, 3, 1, 2)
    new = keras_dcn.layers.DeformConv2D(**kwargs)
    old = keras_dcn.tf_keras.DeformConv2D(**kwargs)
    new.build(inputs.shape)
    old.build(inputs.shape)
    assert [_short_name(w) for w in old.weights] == [w.name for w in new.weights]
    assert [tuple(w.shape) for w in old.weights] == [tuple(w.shape) for w in new.weights]
    weights = _random_weights(new)
    new.set_weights(weights)
    old.set_weights(weights)
    np.testing.assert_array_equal(old(inputs).numpy(), keras.ops.convert_to_numpy(new(inputs)))
    assert tuple(old.compute_output_shape(inputs.shape)) == new.compute_output_shape(inputs.shape)


@pytest.mark.parametrize("modulated", [True, False])
def test_deform_roi_pool_matches_keras3(modulated):
    kwargs = dict(output_size=(3, 2), spatial_scale=0.5, hidden_units=8, modulated=modulated)
    new = keras_dcn.layers.DeformRoIPool(**kwargs)
    old = keras_dcn.tf_keras.DeformRoIPool(**kwargs)
    new(IMAGES, ROIS)
    old(IMAGES, ROIS)
    assert [_short_name(w) for w in old.weights] == [w.name for w in new.weights]
    first, second = (getattr(old, f"hidden{i}_kernel").numpy().ravel()[:64] for i in (1, 2))
    assert not np.allclose(first, second)  # one unseeded initializer, two draws
    weights = _random_weights(new)
    new.set_weights(weights)
    old.set_weights(weights)
    np.testing.assert_array_equal(old(IMAGES, ROIS).numpy(),
                                  keras.ops.convert_to_numpy(new(IMAGES, ROIS)))


def _tf_keras_model():
    images = tf_keras.Input((12, 12, 4))
    rois = tf_keras.Input((5,))
    features = keras_dcn.tf_keras.DeformConv2D(4, 3, padding="same", activation="relu")(images)
    pooled = keras_dcn.tf_keras.DeformRoIPool(output_size=2, hidden_units=8)(features, rois)
    return tf_keras.Model([images, rois], pooled)


def test_tf_keras_model_trains_a_step():
    model = _tf_keras_model()
    model.compile(tf_keras.optimizers.SGD(0.1), "mse")
    target = RNG.standard_normal((2, 2, 2, 4)).astype("float32")
    conv = model.layers[1]
    conv.offset_kernel.assign(RNG.standard_normal(conv.offset_kernel.shape) * 0.1)
    before = [w.numpy() for w in model.weights]
    loss = model.train_on_batch([IMAGES, ROIS], target)
    assert np.isfinite(loss)
    changed = [np.any(b != w.numpy()) for b, w in zip(before, model.weights)]
    # The RoI branch's zero-initialised offset layer gets gradient from the first step;
    # every conv weight moves.
    assert all(changed[:4]) and changed[-2]


def test_tf_keras_branch_learning_rate():
    layers = [keras_dcn.tf_keras.DeformConv2D(3, 3, offset_lr_multiplier=m) for m in (0.1, 1.0)]
    weights = None
    steps = []
    for layer in layers:
        layer.build(IMAGES.shape)
        weights = weights or _random_weights(layer)
        layer.set_weights(weights)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(IMAGES)))
        steps.append(tape.gradient(loss, layer.trainable_weights))
    for scaled, plain, weight in zip(*steps, layers[0].trainable_weights):
        factor = 0.1 if _short_name(weight).startswith("offset_") else 1.0
        np.testing.assert_allclose(scaled, factor * plain.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [keras_dcn.tf_keras.DeformConv2D, keras_dcn.tf_keras.DeformRoIPool])
def test_registered_in_tf_keras(cls):
    name = f"keras_dcn>{cls.__name__}"
    assert tf_keras.utils.get_registered_name(cls) == name
    assert tf_keras.utils.get_registered_object(name) is cls
    layer = cls(4, 3) if cls.__name__ == "DeformConv2D" else cls(output_size=2, hidden_units=8)
    clone = tf_keras.layers.deserialize(tf_keras.layers.serialize(layer))
    assert type(clone) is cls and clone.get_config() == layer.get_config()


def test_tf_keras_save_and_load(tmp_path):
    model = _tf_keras_model()
    expected = model([IMAGES, ROIS]).numpy()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf_keras.models.load_model(path)
    np.testing.assert_array_equal(loaded([IMAGES, ROIS]).numpy(), expected)


def test_tf_keras_mixed_precision():
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        conv = keras_dcn.tf_keras.DeformConv2D(4, 3)
        pool = keras_dcn.tf_keras.DeformRoIPool(output_size=2, hidden_units=8)
        assert conv(IMAGES).dtype == tf.float16
        assert pool(IMAGES, ROIS).dtype == tf.float16
        for weight in conv.weights + pool.weights:
            assert weight.dtype == tf.float32
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
