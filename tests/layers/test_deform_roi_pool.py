"""keras_dcn.layers.DeformRoIPool: RoIAlign at initialisation, the branch's layout and
initialisation, shapes, config and training. (The whole layer's
values and gradients against an independent computation: test_keras_backends.py.)"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_dcn
from keras_dcn.layers import DeformRoIPool

ROIS = np.array([
    [0, 2.0, 3.0, 25.0, 20.0],
    [1, 0.0, 0.0, 31.0, 31.0],
    [1, 10.5, 4.0, 14.0, 30.0],
], "float32")


def _features(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def _to_first(x):
    return np.transpose(x, (0, 3, 1, 2))


def _roi_align(features, rois, **kwargs):
    return keras_dcn.ops.deform_roi_pool(features, rois, **kwargs).numpy()


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("modulated, scale", [(True, 0.5), (False, 1.0)])
def test_fresh_layer_is_roi_align(modulated, scale, data_format, rng):
    features = _features(rng, 2, 16, 16, 3)
    pool_args = dict(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    layer = DeformRoIPool(hidden_units=16, modulated=modulated, data_format=data_format,
                          **pool_args)
    inputs = features if data_format == "channels_last" else _to_first(features)
    expected = scale * _roi_align(features, ROIS, **pool_args)
    if data_format == "channels_first":
        expected = _to_first(expected)
    np.testing.assert_allclose(layer(inputs, ROIS), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("modulated, per_bin", [(True, 3), (False, 2)])
def test_branch_weights(modulated, per_bin):
    layer = DeformRoIPool(output_size=(7, 5), hidden_units=256, modulated=modulated)
    layer.build((None, 20, 20, 8), (None, 5))
    shapes = {w.name: tuple(w.shape) for w in layer.weights}
    assert shapes == {
        "hidden1_kernel": (35 * 8, 256), "hidden1_bias": (256,),
        "hidden2_kernel": (256, 256), "hidden2_bias": (256,),
        "offset_kernel": (256, per_bin * 35), "offset_bias": (per_bin * 35,),
    }
    for name in ("hidden1_kernel", "hidden2_kernel"):
        values = getattr(layer, name).numpy()
        assert abs(values.mean()) < 1e-3 and values.std() == pytest.approx(0.01, rel=0.05)
    first, second = (getattr(layer, f"hidden{i}_kernel").numpy().ravel()[:1000] for i in (1, 2))
    assert np.corrcoef(first, second)[0, 1] < 0.2  # independent draws, not one repeated
    for name in ("hidden1_bias", "hidden2_bias", "offset_kernel", "offset_bias"):
        assert not np.any(getattr(layer, name).numpy()), name


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_branch_output_layout(data_format, rng):
    """Branch outputs: (dy, dx) per bin k = ph * ow + pw, then one mask logit per bin."""
    features = _features(rng, 2, 16, 16, 3)
    oh, ow = 2, 3
    layer = DeformRoIPool(output_size=(oh, ow), hidden_units=8, gamma=0.2,
                          spatial_scale=0.5, data_format=data_format)
    inputs = features if data_format == "channels_last" else _to_first(features)
    layer(inputs, ROIS)
    branch_bias = rng.uniform(-1, 1, 3 * oh * ow).astype("float32")
    layer.offset_bias.assign(branch_bias)  # kernel 0: every RoI gets the bias
    offsets = np.broadcast_to(branch_bias[:2 * oh * ow].reshape(oh, ow, 2), (3, oh, ow, 2))
    mask = 1 / (1 + np.exp(-branch_bias[2 * oh * ow:].reshape(1, oh, ow, 1)))
    expected = _roi_align(features, ROIS, offsets=offsets,
                          mask=np.broadcast_to(mask, (3, oh, ow, 1)),
                          output_size=(oh, ow), gamma=0.2, spatial_scale=0.5)
    if data_format == "channels_first":
        expected = _to_first(expected)
    np.testing.assert_allclose(layer(inputs, ROIS), expected, rtol=1e-5, atol=1e-6)


def test_branch_reads_the_roi_features(rng):
    """With nonzero weights the offsets of each RoI depend on what RoIAlign read."""
    features = _features(rng, 2, 16, 16, 3)
    layer = DeformRoIPool(output_size=2, hidden_units=8, hidden_initializer="glorot_uniform")
    layer(features, ROIS)
    layer.offset_kernel.assign(rng.standard_normal(layer.offset_kernel.shape))
    offsets, mask = layer.offsets_and_mask(tf.constant(features), tf.constant(ROIS))
    assert offsets.shape == (3, 2, 2, 2) and mask.shape == (3, 2, 2, 1)
    assert np.std(offsets.numpy(), axis=0).min() > 0


def test_compute_output_shape_and_functional_use(rng):
    features = keras.Input((16, 16, 6))
    rois = keras.Input((5,))
    layer = DeformRoIPool(output_size=(3, 2), hidden_units=8, spatial_scale=0.5)
    outputs = layer(features, rois)
    assert tuple(outputs.shape) == (None, 3, 2, 6)
    assert layer.compute_output_shape((2, 16, 16, 6), (4, 5)) == (4, 3, 2, 6)
    first = DeformRoIPool(output_size=3, hidden_units=8, data_format="channels_first")
    assert first.compute_output_shape((2, 6, 16, 16), (4, 5)) == (4, 6, 3, 3)
    model = keras.Model([features, rois], outputs)
    # RoIs are not batched with the images: one call per batch of images.
    result = model.predict_on_batch([_features(rng, 2, 16, 16, 6), ROIS])
    assert result.shape == (3, 3, 2, 6)


def test_arrays_integer_rois_and_empty_rois(rng):
    features = _features(rng, 2, 16, 16, 3)
    layer = DeformRoIPool(output_size=2, hidden_units=4)
    as_int = layer(features, ROIS.astype("int32"))
    np.testing.assert_allclose(as_int, layer(features, np.floor(ROIS)), rtol=1e-6)
    empty = layer(tf.constant(features), tf.zeros([0, 5]))
    assert empty.shape == (0, 2, 2, 3)


def test_bad_arguments_raise(rng):
    for kwargs, match in [
        (dict(output_size=0), "output_size"),
        (dict(spatial_scale=0), "spatial_scale"),
        (dict(hidden_units=0), "hidden_units"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(data_format="NCHW"), "data_format"),
    ]:
        with pytest.raises(ValueError, match=match):
            DeformRoIPool(**kwargs)
    with pytest.raises(ValueError, match="rois"):
        DeformRoIPool(hidden_units=4)(_features(rng, 1, 8, 8, 2), np.zeros([3, 4], "float32"))


def test_config_round_trip():
    layer = DeformRoIPool(
        output_size=(5, 3), spatial_scale=0.125, sampling_ratio=0, gamma=0.2, aligned=False,
        modulated=False, hidden_units=64, data_format="channels_first",
        offset_lr_multiplier=0.5, hidden_initializer=keras.initializers.RandomNormal(stddev=0.02),
        kernel_regularizer="l2", name="pool")
    config = layer.get_config()
    clone = DeformRoIPool.from_config(config)
    assert clone.get_config() == config
    assert clone.output_size == (5, 3) and clone.name == "pool"
    assert clone.hidden_initializer.stddev == 0.02
    arguments = set(inspect.signature(DeformRoIPool.__init__).parameters) - {"self", "kwargs"}
    assert arguments <= set(config)
    assert DeformRoIPool().name != DeformRoIPool().name  # unique default names


def test_training_moves_the_offsets(rng):
    features = _features(rng, 2, 16, 16, 4)
    target = rng.standard_normal((3, 3, 3, 4)).astype("float32")
    feature_input = keras.Input((16, 16, 4))
    roi_input = keras.Input((5,))
    layer = DeformRoIPool(output_size=3, hidden_units=32, hidden_initializer="glorot_uniform",
                          spatial_scale=0.5)
    model = keras.Model([feature_input, roi_input], layer(feature_input, roi_input))
    model.compile(keras.optimizers.SGD(0.5), "mse")
    dataset = tf.data.Dataset.from_tensors(((features, ROIS), target)).repeat(20)
    history = model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.any(layer.offset_kernel.numpy() != 0)
    offsets, _ = layer.offsets_and_mask(tf.constant(features), tf.constant(ROIS))
    assert np.abs(offsets.numpy()).max() > 1e-3
    assert model.evaluate(dataset.take(1), verbose=0) < np.mean(target ** 2)


