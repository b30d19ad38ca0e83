"""keras_dcn.layers.DeformConv2D: Conv2D compatibility, the offset / mask branch, the
branch's learning-rate multiplier, XLA opt-out and training. (The whole layer's values
and gradients against an independent computation: test_keras_backends.py, which runs
under every Keras backend.)"""

import dataclasses
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.trainers import trainer as keras_trainer

import keras_dcn
from keras_dcn import _library
from keras_dcn.layers import DeformConv2D


def _random(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype("float32")


def _to_first(x):
    return np.transpose(x, (0, 3, 1, 2))


def _built(layer, input_shape):
    layer.build(input_shape)
    return layer


# --- Conv2D compatibility ---------------------------------------------------------

@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("conv_args", [
    dict(kernel_size=3),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=(3, 2), strides=2, padding="same"),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=(1, 3), strides=(1, 2), groups=2),
    dict(kernel_size=3, activation="relu", use_bias=False),
])
def test_zero_offsets_match_conv2d(conv_args, data_format, rng):
    x = _random(rng, 2, 9, 10, 4)
    conv = keras.layers.Conv2D(6, **conv_args)  # CPU Conv2D runs channels_last only
    expected = keras.ops.convert_to_numpy(conv(x))
    layer = DeformConv2D(6, modulated=False, data_format=data_format, **conv_args)
    inputs = x if data_format == "channels_last" else _to_first(x)
    _built(layer, inputs.shape)
    layer.kernel.assign(conv.kernel)
    if conv.use_bias:
        layer.bias.assign(conv.bias + 0.25)
        conv.bias.assign(conv.bias + 0.25)
        expected = keras.ops.convert_to_numpy(conv(x))
    if data_format == "channels_first":
        expected = _to_first(expected)
    actual = keras.ops.convert_to_numpy(layer(inputs))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_fresh_modulated_layer_is_half_of_conv2d(rng):
    x = _random(rng, 2, 8, 8, 3)
    conv = keras.layers.Conv2D(5, 3, padding="same", use_bias=False)
    conv.build(x.shape)
    layer = _built(DeformConv2D(5, 3, padding="same", use_bias=False), x.shape)
    layer.kernel.assign(conv.kernel)
    np.testing.assert_allclose(layer(x), 0.5 * conv(x), rtol=1e-5, atol=1e-5)


def test_conv2d_weights_load_by_position():
    """`kernel` and `bias` come first, with Conv2D's names and shapes."""
    conv = keras.layers.Conv2D(8, 3, groups=2)
    conv.build((None, 7, 7, 4))
    layer = _built(DeformConv2D(8, 3, groups=2), (None, 7, 7, 4))
    assert [w.name for w in conv.weights] == ["kernel", "bias"]
    assert [w.name for w in layer.weights] == ["kernel", "bias", "offset_kernel", "offset_bias"]
    assert [tuple(w.shape) for w in layer.weights[:2]] == [tuple(w.shape) for w in conv.weights]
    layer.set_weights(conv.get_weights() + layer.get_weights()[2:])
    np.testing.assert_array_equal(layer.kernel, conv.kernel)


@pytest.mark.parametrize("modulated, per_tap", [(True, 3), (False, 2)])
def test_offset_branch_weights(modulated, per_tap):
    layer = _built(DeformConv2D(4, (3, 2), deformable_groups=2, modulated=modulated),
                   (None, 6, 6, 6))
    assert layer.offset_kernel.shape == (3, 2, 6, per_tap * 2 * 6)
    assert layer.offset_bias.shape == (per_tap * 2 * 6,)
    assert not np.any(layer.offset_kernel.numpy()) and not np.any(layer.offset_bias.numpy())


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_branch_output_order(data_format, rng):
    """First 2K*dg branch channels are the op's offsets, the last K*dg mask logits."""
    x = _random(rng, 2, 7, 7, 4)
    layer = DeformConv2D(3, 3, padding="same", deformable_groups=2, data_format=data_format)
    inputs = x if data_format == "channels_last" else _to_first(x)
    _built(layer, inputs.shape)
    taps = 2 * 9
    branch_bias = _random(rng, 3 * taps, scale=0.7)
    layer.offset_bias.assign(branch_bias)  # kernel 0: the branch output is its bias
    offsets = np.broadcast_to(branch_bias[:2 * taps], (2, 7, 7, 2 * taps))
    mask = np.broadcast_to(1 / (1 + np.exp(-branch_bias[2 * taps:])), (2, 7, 7, taps))
    expected = keras_dcn.ops.deform_conv2d(
        x, offsets, layer.kernel, mask, layer.bias, padding="same", deformable_groups=2)
    if data_format == "channels_first":
        expected = _to_first(expected.numpy())
    np.testing.assert_allclose(layer(inputs), expected, rtol=1e-5, atol=1e-6)


# --- Shapes, arguments, config ----------------------------------------------------

@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("conv_args", [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2, padding="same"),
    dict(kernel_size=(3, 5), strides=(2, 3), dilation_rate=(2, 1)),
    dict(kernel_size=3, padding=1, strides=2, dilation_rate=2),
    dict(kernel_size=3, padding=(0, 2)),
    dict(kernel_size=2, padding=((1, 0), (2, 1)), strides=(1, 2)),
])
def test_compute_output_shape_matches_call(conv_args, data_format, rng):
    shape = (2, 11, 9, 2) if data_format == "channels_last" else (2, 2, 11, 9)
    layer = DeformConv2D(3, data_format=data_format, **conv_args)
    outputs = layer(_random(rng, *shape))
    assert layer.compute_output_shape(shape) == tuple(outputs.shape)
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + tuple(outputs.shape[1:])
    symbolic = layer(keras.Input(shape[1:]))
    assert tuple(symbolic.shape) == (None,) + tuple(outputs.shape[1:])


def test_arguments_are_standardised_like_conv2d():
    layer = DeformConv2D(4, 3, strides=[2, 1], padding="SAME", dilation_rate=(1, 1))
    conv = keras.layers.Conv2D(4, 3, strides=[2, 1], padding="SAME")
    for name in ("kernel_size", "strides", "padding", "dilation_rate", "data_format"):
        assert getattr(layer, name) == getattr(conv, name), name
    assert layer.data_format == keras.config.image_data_format()
    assert DeformConv2D(4, 3, padding=[[1, 0], [0, 2]]).padding == ((1, 0), (0, 2))


def test_default_data_format_follows_keras_config():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        assert DeformConv2D(4, 3).data_format == "channels_first"
    finally:
        keras.config.set_image_data_format(previous)


@pytest.mark.parametrize("kwargs, match", [
    (dict(filters=0, kernel_size=3), "filters"),
    (dict(filters=4, kernel_size=(3, 0)), "kernel_size"),
    (dict(filters=4, kernel_size=3, strides=0), "strides"),
    (dict(filters=4, kernel_size=3, padding="causal"), "padding"),
    (dict(filters=4, kernel_size=3, padding=-1), "padding"),
    (dict(filters=5, kernel_size=3, groups=2), "groups"),
    (dict(filters=4, kernel_size=3, data_format="NHWC"), "data_format"),
    (dict(filters=4, kernel_size=3, offset_lr_multiplier=-1), "offset_lr_multiplier"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeformConv2D(**kwargs)


def test_bad_input_channels_raise(rng):
    with pytest.raises(ValueError, match="deformable_groups"):
        DeformConv2D(4, 3, deformable_groups=3)(_random(rng, 1, 5, 5, 4))
    with pytest.raises(ValueError, match="groups"):
        DeformConv2D(4, 3, groups=4)(_random(rng, 1, 5, 5, 6))
    with pytest.raises(ValueError):
        DeformConv2D(4, 3)(_random(rng, 5, 5, 4))


def test_config_round_trip():
    layer = DeformConv2D(
        6, (3, 1), strides=2, padding=((1, 0), (0, 1)), dilation_rate=(1, 2), groups=2,
        deformable_groups=3, modulated=False, use_bias=False, activation="relu",
        offset_lr_multiplier=0.25, data_format="channels_first",
        kernel_initializer=keras.initializers.HeNormal(seed=3),
        kernel_regularizer=keras.regularizers.L2(1e-4),
        activity_regularizer="l1", kernel_constraint="non_neg", name="dcn")
    config = layer.get_config()
    clone = DeformConv2D.from_config(config)
    assert clone.get_config() == config
    for key in ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups",
                "deformable_groups", "modulated", "use_bias", "offset_lr_multiplier",
                "data_format", "name"):
        assert getattr(clone, key) == getattr(layer, key), key
    assert config["activation"] == "relu"
    # Every constructor argument is in the config.
    arguments = set(inspect.signature(DeformConv2D.__init__).parameters) - {"self", "kwargs"}
    assert arguments <= set(config)


# --- Learning rate of the offset branch ------------------------------------------

def _twins(rng, multiplier, x):
    """A layer with `multiplier` and a multiplier-1 twin with the same, nonzero, weights."""
    layers = [DeformConv2D(3, 3, padding="same", offset_lr_multiplier=m)
              for m in (multiplier, 1.0)]
    for layer in layers:
        layer.build(x.shape)
    weights = [w + _random(rng, *w.shape, scale=0.1) for w in layers[0].get_weights()]
    for layer in layers:
        layer.set_weights(weights)
    return layers


def test_branch_sgd_step_is_scaled_by_the_multiplier(rng):
    x = _random(rng, 2, 6, 6, 4)
    target = _random(rng, 2, 6, 6, 3)
    scaled, plain = _twins(rng, 0.1, x)

    def loss_of(layer):
        return tf.reduce_mean(tf.square(layer(x) - target))

    with tf.GradientTape() as tape:
        loss = loss_of(plain)
    unscaled = dict(zip((w.name for w in plain.trainable_weights),
                        tape.gradient(loss, plain.trainable_weights)))
    assert np.any(unscaled["offset_kernel"].numpy() != 0)

    learning_rate = 0.5
    before = {w.name: w.numpy() for w in scaled.trainable_weights}
    optimizer = keras.optimizers.SGD(learning_rate)
    with tf.GradientTape() as tape:
        loss = loss_of(scaled)
    optimizer.apply_gradients(zip(tape.gradient(loss, scaled.trainable_weights),
                                  scaled.trainable_weights))
    for weight in scaled.trainable_weights:
        factor = 0.1 if weight.name.startswith("offset_") else 1.0
        step = before[weight.name] - weight.numpy()
        np.testing.assert_allclose(step, factor * learning_rate * unscaled[weight.name],
                                   rtol=1e-4, atol=1e-7, err_msg=weight.name)


def test_fit_step_moves_branch_by_the_multiplier_relative_to_a_twin(rng):
    """One `Model.fit` step with SGD: same step for `kernel` / `bias` as the
    multiplier-1 twin, `multiplier` times its step for the branch."""
    x = _random(rng, 4, 6, 6, 4)
    y = _random(rng, 4, 6, 6, 3)
    steps = {}
    for layer in _twins(rng, 0.1, x):
        model = keras.Sequential([keras.Input(x.shape[1:]), layer])
        model.compile(keras.optimizers.SGD(0.3), "mse")
        before = [w.numpy() for w in layer.weights]
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        steps[layer.offset_lr_multiplier] = {
            w.name: b - w.numpy() for b, w in zip(before, layer.weights)}
    for name, twin_step in steps[1.0].items():
        assert np.any(twin_step != 0), name
        factor = 0.1 if name.startswith("offset_") else 1.0
        np.testing.assert_allclose(steps[0.1][name], factor * twin_step,
                                   rtol=1e-4, atol=1e-7, err_msg=name)


def test_adam_normalises_the_multiplier_away_on_the_first_step(rng):
    """Documented limitation: Adam's first step is +-lr whatever the gradient scale."""
    x = _random(rng, 2, 6, 6, 4)
    target = _random(rng, 2, 6, 6, 3)
    moved = {}
    for layer in _twins(rng, 0.1, x):
        optimizer = keras.optimizers.Adam(1e-3)
        before = layer.offset_kernel.numpy()
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x) - target))
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_weights),
                                      layer.trainable_weights))
        moved[layer.offset_lr_multiplier] = np.abs(before - layer.offset_kernel.numpy()).max()
    assert moved[0.1] == pytest.approx(moved[1.0], rel=1e-2)


# --- XLA and the Keras training loop ----------------------------------------------

def _models(implementation="auto"):
    inputs = keras.Input((8, 8, 3))
    deformable = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(
        DeformConv2D(4, 3, padding="same", implementation=implementation)(inputs)))
    inputs = keras.Input((8, 8, 3))
    regular = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(4, 3, padding="same")(inputs)))
    return deformable, regular


def _with_accelerator(monkeypatch):
    """Makes TensorFlow list a GPU besides the real devices."""
    real = tf.config.list_physical_devices

    def with_accelerator(device_type=None):
        devices = list(real(device_type))
        if device_type in (None, "GPU"):
            devices.append(tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU"))
        return devices

    monkeypatch.setattr(tf.config, "list_physical_devices", with_accelerator)


def test_compile_auto_keeps_the_custom_kernels_off_xla(monkeypatch):
    """Keras' "auto" picks XLA when the machine has an accelerator, no distribution
    strategy is set, and every layer `supports_jit` (trainer.model_supports_jit). Fake
    an accelerator: the Conv2D model goes to XLA, one of custom kernels stays off it,
    and refuses `jit_compile=True` with Keras' warning."""
    deformable, regular = _models("custom")
    assert keras_trainer.model_supports_jit(regular) is True
    assert keras_trainer.model_supports_jit(deformable) is False
    _with_accelerator(monkeypatch)
    regular.compile("sgd", "mse")
    deformable.compile("sgd", "mse")
    assert regular.jit_compile is True
    assert deformable.jit_compile is False
    with pytest.warns(UserWarning, match="jit_compile"):
        deformable.compile("sgd", "mse", jit_compile=True)
    assert deformable.jit_compile is False


@pytest.mark.parametrize("implementation, cuda, gpu, want", [
    ("composite", True, True, True),
    ("custom", False, False, False),
    ("auto", False, False, True),   # CPU only: XLA runs the composite
    ("auto", False, True, True),    # a GPU the library has no kernels for
    ("auto", True, True, False),    # CUDA kernels serve the GPU: keep them
])
def test_auto_lets_keras_use_xla_unless_cuda_kernels_serve_a_gpu(
        monkeypatch, implementation, cuda, gpu, want):
    info = _library.build_info()
    monkeypatch.setattr(_library, "build_info",
                        lambda: dataclasses.replace(info, cuda=cuda))
    if gpu:
        _with_accelerator(monkeypatch)
    assert DeformConv2D(4, 3, implementation=implementation).supports_jit is want


def test_jit_compile_true_trains_with_the_composite(rng):
    """`compile(jit_compile=True)` holds on a CPU machine: `fit` runs under XLA (with the
    composite), and the compiled model predicts what the uncompiled one does."""
    deformable, _ = _models()
    x, y = _random(rng, 8, 8, 8, 3), _random(rng, 8, 4)
    deformable.compile("sgd", "mse", jit_compile=True)
    assert deformable.jit_compile is True
    history = deformable.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    compiled = deformable.predict(x, verbose=0)
    deformable.compile("sgd", "mse", jit_compile=False)
    np.testing.assert_allclose(compiled, deformable.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_fit_evaluate_predict_with_compile_defaults(rng):
    deformable, _ = _models()
    deformable.compile("adam", "mse")
    assert deformable.jit_compile is False
    x, y = _random(rng, 8, 8, 8, 3), _random(rng, 8, 4)
    history = deformable.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.isfinite(deformable.evaluate(x, y, verbose=0))
    assert deformable.predict(x, verbose=0).shape == (8, 4)


def _shifted_fields(rng, count, height=12, width=12):
    """Smooth random images, each paired with a horizontal shift d in [-1.5, 1.5].

    Input channel 0 is the image, channel 1 holds d everywhere; the target is the image
    read at (y, x + d): solvable exactly by a 1x1 deformable conv whose offset branch
    learns dx = d, not by a regular conv (d varies per sample and continuously).
    """
    yy, xx = np.mgrid[0:height, 0:width].astype("float32")
    images = np.zeros((count, height, width), "float32")
    for _ in range(3):
        ky, kx = rng.uniform(-0.6, 0.6, (2, count, 1, 1))
        phase = rng.uniform(0, 2 * np.pi, (count, 1, 1))
        images += np.sin(ky * yy + kx * xx + phase).astype("float32")
    shifts = rng.uniform(-1.5, 1.5, count).astype("float32")
    columns = np.arange(width, dtype="float32")
    targets = np.stack([
        np.stack([np.interp(columns + s, columns, row, left=0, right=0) for row in image])
        for image, s in zip(images, shifts)])
    inputs = np.stack([images, np.broadcast_to(shifts[:, None, None], images.shape)], -1)
    return inputs.astype("float32"), targets[..., None].astype("float32"), shifts


def test_training_learns_offsets_on_a_geometric_task(rng):
    x, y, shifts = _shifted_fields(rng, 256)
    layer = DeformConv2D(1, 1, modulated=False, use_bias=False, offset_lr_multiplier=1.0)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    layer.kernel.assign(np.array([1.0, 0.0], "float32").reshape(1, 1, 2, 1))
    model.compile(keras.optimizers.SGD(0.5, momentum=0.9), "mse")
    initial = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.3 * initial
    offsets, _ = layer.offsets_and_mask(tf.constant(x))
    dx = offsets.numpy()[..., 1].mean(axis=(1, 2))  # the dx of the only tap
    assert np.abs(dx).mean() > 0.3  # offsets left zero ...
    assert np.corrcoef(dx, shifts)[0, 1] > 0.95  # ... towards the shift of each sample
