"""Both layers under Keras' mixed-precision policies: half-precision compute, float32
variables, RoIs left in float32, a few training steps, and outputs that differ from
their float32 twins' by less than bounds set by the half type's unit roundoff."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_dcn

from keras_dcn.layers import DeformConv2D, DeformRoIPool


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def policy(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield keras.mixed_precision.global_policy()
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _assert_float32_variables(layer):
    assert layer.weights
    for weight in layer.weights:
        assert weight.dtype == "float32", weight.path


def test_deform_conv2d(policy, rng):
    x = rng.standard_normal((8, 8, 8, 3)).astype("float32")
    y = rng.standard_normal((8, 4)).astype("float32")
    layer = DeformConv2D(4, 3, padding="same")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Activation("linear", dtype="float32")(
        keras.layers.GlobalAveragePooling2D()(layer(inputs))))
    assert layer.compute_dtype == policy.compute_dtype
    assert layer(x).dtype == policy.compute_dtype
    _assert_float32_variables(layer)
    # Nonzero offsets, so the branch gets gradients through the op's half kernels.
    layer.offset_kernel.assign(rng.standard_normal(layer.offset_kernel.shape) * 0.1)
    before = [w.numpy() for w in layer.weights]
    model.compile(keras.optimizers.SGD(0.1), "mse")
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for old, weight in zip(before, layer.weights):
        assert np.any(old != weight.numpy()), weight.path
    _assert_float32_variables(layer)


def test_deform_roi_pool(policy, monkeypatch, rng):
    features = rng.standard_normal((2, 16, 16, 4)).astype("float32")
    # Box corners that float16 / bfloat16 cannot hold exactly.
    rois = np.array([[0, 1.3, 2.1, 27.7, 29.9], [1, 0.1, 3.3, 30.9, 17.1]], "float32")
    layer = DeformRoIPool(output_size=3, hidden_units=16, spatial_scale=0.5)
    feature_input = keras.Input((16, 16, 4))
    roi_input = keras.Input((5,))
    outputs = layer(feature_input, roi_input)
    assert outputs.dtype == policy.compute_dtype
    model = keras.Model([feature_input, roi_input],
                        keras.layers.Activation("linear", dtype="float32")(outputs))
    result = layer(features, rois)
    assert result.dtype == policy.compute_dtype
    _assert_float32_variables(layer)
    # The boxes reach the op exactly as given (Keras casts float arguments to the
    # compute dtype unless told not to; corners like 27.7 do not survive that).
    seen = []
    op = keras_dcn.ops.deform_roi_pool

    def spy(features, rois, **kwargs):
        seen.append(rois)
        return op(features, rois, **kwargs)

    monkeypatch.setattr(keras_dcn.ops, "deform_roi_pool", spy)
    layer(features, rois)
    model.predict_on_batch([features, rois])
    monkeypatch.undo()
    assert len(seen) == 4  # branch and pooling, eager and in the traced model
    for seen_rois in seen:
        assert seen_rois.dtype == tf.float32
        if hasattr(seen_rois, "numpy"):  # eager (a traced tensor has no value)
            np.testing.assert_array_equal(seen_rois, rois)

    target = rng.standard_normal((2, 3, 3, 4)).astype("float32")
    before = [w.numpy() for w in layer.weights]
    model.compile(keras.optimizers.SGD(0.5), "mse")
    dataset = tf.data.Dataset.from_tensors(((features, rois), target)).repeat(3)
    history = model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    changed = [np.any(old != w.numpy()) for old, w in zip(before, layer.weights)]
    assert all(changed), [w.path for w, c in zip(layer.weights, changed) if not c]
    _assert_float32_variables(layer)


# Unit roundoff of the half types (half the spacing of the numbers near 1).
UNIT_ROUNDOFF = {"mixed_float16": 2.0 ** -11, "mixed_bfloat16": 2.0 ** -8}


def _half_and_float32_twins(make, policy, *build_shapes):
    reference = make(dtype="float32")
    reference.build(*build_shapes)
    half = make(dtype=policy)
    half.build(*build_shapes)
    return reference, half


def test_deform_conv2d_matches_float32_to_the_half_precision(policy, rng):
    """Inputs, weights and offsets are each rounded once to the half type, products
    accumulate in float32 and the output is rounded once: the error stays within
    4 u (|x| * |w| summed over the taps, plus |y|), u the unit roundoff."""
    u = UNIT_ROUNDOFF[policy.name]
    x = rng.standard_normal((2, 9, 9, 8)).astype("float32")
    reference, half = _half_and_float32_twins(
        lambda dtype: DeformConv2D(6, 3, padding="same", deformable_groups=2, dtype=dtype),
        policy, x.shape)
    for weight in reference.weights:  # offsets of about a pixel
        scale = 0.1 if weight.name == "offset_kernel" else 0.3
        weight.assign(rng.normal(0.0, scale, weight.shape))
    half.set_weights(reference.get_weights())
    expected = reference(x).numpy()
    got = half(x).numpy().astype("float32")
    offsets, mask = reference.offsets_and_mask(tf.constant(x))
    magnitude = keras_dcn.ops.deform_conv2d(
        np.abs(x), offsets, np.abs(reference.kernel.numpy()), mask,
        np.abs(reference.bias.numpy()), padding="same", deformable_groups=2).numpy()
    bound = 4 * u * (magnitude + np.abs(expected))
    assert np.all(np.abs(got - expected) <= bound), np.max(np.abs(got - expected) / bound)


def test_deform_roi_pool_matches_float32_to_the_half_precision(policy, rng):
    """As for the convolution, and the offsets come from three fc layers computed in
    the half type: within 8 u (the pooled |features| plus |y|)."""
    u = UNIT_ROUNDOFF[policy.name]
    features = rng.standard_normal((2, 16, 16, 4)).astype("float32")
    rois = np.array([[0, 1.3, 2.1, 27.7, 29.9], [1, 0.1, 3.3, 30.9, 17.1]], "float32")
    reference, half = _half_and_float32_twins(
        lambda dtype: DeformRoIPool(output_size=3, hidden_units=16, spatial_scale=0.5,
                                    dtype=dtype),
        policy, features.shape, rois.shape)
    for weight in reference.weights:
        weight.assign(rng.normal(0.0, 0.3, weight.shape))
    half.set_weights(reference.get_weights())
    expected = reference(features, rois).numpy()
    got = half(features, rois).numpy().astype("float32")
    offsets, mask = reference.offsets_and_mask(tf.constant(features), tf.constant(rois))
    assert np.abs(offsets.numpy()).max() > 0.5  # the bins move
    magnitude = keras_dcn.ops.deform_roi_pool(
        np.abs(features), rois, offsets=offsets, mask=mask, output_size=3,
        spatial_scale=0.5).numpy()
    bound = 8 * u * (magnitude + np.abs(expected))
    assert np.all(np.abs(got - expected) <= bound), np.max(np.abs(got - expected) / bound)
