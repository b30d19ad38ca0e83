"""Helpers shared by the op tests: the dtypes and data formats to run, the tolerances
and the one comparison they all use."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn.ops import _args

# Every float dtype the ops take, as pytest parameters named after the dtype.
DTYPES = [pytest.param(dtype, id=dtype.name) for dtype in _args.FLOAT_DTYPES]
DATA_FORMATS = list(_args.DATA_FORMATS)
# The two implementations of each op: compiled kernels and standard TensorFlow ops.
IMPLEMENTATIONS = ["custom", "composite"]

# Largest error allowed, relative to the largest magnitude of the expected tensor.
# Half types are compared with the float64 reference computed from the same rounded
# inputs, so what remains is the rounding of the result (and float32 accumulation):
# a few times half a unit in the last place.
TOLERANCE = {
    tf.float64: 1e-13,
    tf.float32: 1e-5,
    tf.float16: 2e-3,
    tf.bfloat16: 1e-2,
}
assert set(TOLERANCE) == set(_args.FLOAT_DTYPES), "every dtype the ops take needs a tolerance"


def assert_close(got, want, dtype=tf.float64, what="", tolerance=None):
    """Asserts `got` and `want` (arrays or tensors) have the same shape and differ by
    at most `tolerance` (default `TOLERANCE[dtype]`) times the largest magnitude of
    `want`, element by element. A tolerance of 0 asks for equality."""
    got = np.asarray(tf.cast(got, tf.float64))
    want = np.asarray(tf.cast(want, tf.float64))
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if tolerance is None:
        tolerance = TOLERANCE[dtype]
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-8)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance * scale, err_msg=what)


def zeros(*shape, dtype=tf.float32):
    """A tensor of zeros of `shape`."""
    return tf.zeros(shape, dtype)
