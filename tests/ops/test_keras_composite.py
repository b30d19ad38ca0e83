"""The composites in `keras.ops` (keras_dcn.ops._keras_composite, what the layers run
on Keras' JAX and PyTorch backends) against the plain-TensorFlow references: the op
test grids, forward and the gradient of every tensor, in every dtype with the op
tests' tolerances. `make test` runs this module under each Keras backend."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.ops import _keras_composite
from tests.keras_backend import numpy, output_and_gradients
from tests.ops.conv_cases import GRID, make_case, reference_with_grads, rounded
from tests.ops.helpers import DTYPES, assert_close
from tests.ops.roi_pool_cases import OPTIONS
from tests.ops.roi_pool_cases import make_case as make_roi_case
from tests.ops.roi_pool_cases import reference_and_grads


def _backend_tensor(value, dtype):
    return keras.ops.convert_to_tensor(np.asarray(value, np.float64), dtype=dtype.name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", GRID)
def test_deform_conv2d_matches_reference(params, dtype, rng):
    case = make_case(rng, **params)
    tensors = rounded(case.tensors(), dtype)  # the values the op sees, in `dtype`
    names = list(tensors)
    upstream = tf.cast(tf.constant(rng.normal(size=case.output_shape)), dtype)
    args = [_backend_tensor(tf.cast(tensors[n], tf.float64), dtype) for n in names]

    def conv(*values):
        return _keras_composite.deform_conv2d(
            **dict(zip(names, values)), strides=case.stride_pair, padding=case.padding,
            dilation_rate=case.dilation_pair, groups=case.groups,
            deformable_groups=case.deformable_groups)

    got, grads = output_and_gradients(
        conv, args, _backend_tensor(tf.cast(upstream, tf.float64), dtype), jit=True)
    assert keras.backend.standardize_dtype(got.dtype) == dtype.name
    want, want_grads = reference_with_grads(case, upstream, dtype, tensors)
    assert_close(got.astype(np.float64), want, dtype, "output")
    for name, grad in zip(names, grads):
        assert_close(grad.astype(np.float64), want_grads[name], dtype, f"gradient of {name}")


@pytest.mark.parametrize("options", OPTIONS,
                         ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_deform_roi_pool_matches_reference(options, rng):
    options = dict(options)
    output_size = options.pop("output_size", (3, 4))
    output_size = (output_size, output_size) if isinstance(output_size, int) else output_size
    spatial_scale = options.pop("spatial_scale", 0.5)
    features, rois, offsets, mask = make_roi_case(rng, output_size=output_size,
                                                  spatial_scale=spatial_scale)
    kwargs = dict(options, output_size=output_size, spatial_scale=spatial_scale)
    upstream = rng.normal(size=(len(rois), *output_size, features.shape[-1]))
    args = [keras.ops.convert_to_tensor(v) for v in (features, offsets, mask)]
    rois_tensor = keras.ops.convert_to_tensor(rois)

    def pool(features, offsets, mask):
        return _keras_composite.deform_roi_pool(features, rois_tensor, offsets, mask,
                                                **kwargs)

    # The adaptive grid (sampling_ratio <= 0) sizes itself from the RoIs' values: no jit.
    got, grads = output_and_gradients(pool, args, upstream,
                                      jit=kwargs.get("sampling_ratio", 0) > 0)
    want, want_grads = reference_and_grads(features, rois, offsets, mask, upstream, **kwargs)
    assert_close(got, want, what="output")
    for name, grad, want_grad in zip(("features", "offsets", "mask"), grads, want_grads):
        assert_close(grad, want_grad, what=f"{name} gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_deform_roi_pool_dtypes(dtype, sampling_ratio, rng):
    features, rois, offsets, mask = make_roi_case(rng, channels=8, spatial_scale=0.5,
                                                  offset_scale=0.3)
    # The inputs as the op sees them, so that only the computation is compared.
    features, offsets, mask = (tf.cast(tf.cast(v, dtype), tf.float64).numpy()
                               for v in (features, offsets, mask))
    kwargs = dict(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=sampling_ratio)
    upstream = tf.cast(tf.cast(rng.uniform(size=(4, 3, 4, 8)), dtype), tf.float64).numpy()
    rois_tensor = keras.ops.convert_to_tensor(rois)

    def pool(features, offsets, mask):
        return _keras_composite.deform_roi_pool(features, rois_tensor, offsets, mask,
                                                **kwargs)

    got, grads = output_and_gradients(
        pool, [_backend_tensor(v, dtype) for v in (features, offsets, mask)],
        _backend_tensor(upstream, dtype), jit=sampling_ratio > 0)
    assert keras.backend.standardize_dtype(got.dtype) == dtype.name
    want, want_grads = reference_and_grads(features, rois, offsets, mask, upstream, **kwargs)
    assert_close(got.astype(np.float64), want, dtype, "output")
    for name, grad, want_grad in zip(("features", "offsets", "mask"), grads, want_grads):
        assert numpy(grad).dtype == got.dtype
        assert_close(grad.astype(np.float64), want_grad, dtype, f"{name} gradient")


def test_no_rois_give_an_empty_result(rng):
    features = keras.ops.convert_to_tensor(rng.normal(size=(1, 4, 4, 3)))
    out = _keras_composite.deform_roi_pool(features, keras.ops.zeros((0, 5)),
                                           output_size=(2, 2), sampling_ratio=0)
    assert tuple(out.shape) == (0, 2, 2, 3)


@pytest.mark.parametrize("call, match", [
    (lambda x: _keras_composite.deform_conv2d(
        x, keras.ops.zeros((1, 2, 2, 18)), keras.ops.zeros((3, 3, 2, 4))),
     r"offsets must have shape \(1, 4, 4, 18\)"),
    (lambda x: _keras_composite.deform_roi_pool(x, keras.ops.zeros((2, 4))),
     r"rois must have shape \[R, 5\]"),
    (lambda x: _keras_composite.deform_roi_pool(
        x, keras.ops.convert_to_tensor([[0, 0, 0, 2e8, 2e8]]), sampling_ratio=0),
     "rois are too large for sampling_ratio <= 0"),
])
def test_bad_arguments_raise_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call(keras.ops.zeros((1, 6, 6, 2)))
