"""Argument checks shared by the functional ops. Errors name the argument."""

import math
import numbers

import numpy as np
import tensorflow as tf

# The dtypes of the ops' float tensors: the one list in Python (the C++ one is
# DCN_CALL_FLOAT_TYPES in tf_ops/cc/kernels/float_types.h), also named in errors.
FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
FLOAT_DTYPE_NAMES = (", ".join(d.name for d in FLOAT_DTYPES[:-1])
                     + f" or {FLOAT_DTYPES[-1].name}")
DATA_FORMATS = ("channels_last", "channels_first")


def positive_pair(value, name):
    """An int or a pair of ints, all >= 1, as a tuple of two ints."""
    if isinstance(value, numbers.Integral):
        pair = (value, value)
    else:
        try:
            pair = tuple(value)
        except TypeError:
            pair = ()
    if len(pair) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
        for v in pair
    ):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return tuple(int(v) for v in pair)


def positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def data_format(value):
    if value not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {value!r}")
    return value


def _convert_python_value(value, dtype):
    """`value` as a tensor of its own dtype, except that Python floats meant for a
    float64 `dtype` keep their double precision (TensorFlow reads them as float32)."""
    tensor = tf.convert_to_tensor(value)
    if dtype == tf.float64 and tensor.dtype == tf.float32 and \
            not isinstance(value, (tf.Tensor, tf.Variable, np.ndarray, np.generic)):
        tensor = tf.convert_to_tensor(np.asarray(value, np.float64))
    return tensor


def float_tensor(value, name, dtype=None):
    """`value` as a tensor of a supported float dtype (`dtype` when given)."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        tensor = tf.convert_to_tensor(value)
        if dtype is not None and tensor.dtype != dtype:
            raise TypeError(
                f"{name} must have dtype {dtype.name} (the dtype of the inputs), "
                f"got {tensor.dtype.name}"
            )
    else:  # Python and NumPy values take the dtype they are used with.
        tensor = _convert_python_value(value, dtype)
        if tensor.dtype.is_floating or tensor.dtype.is_integer:
            tensor = tf.cast(tensor, dtype or (tensor.dtype if tensor.dtype.is_floating else tf.float32))
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be {FLOAT_DTYPE_NAMES}, got {tensor.dtype.name}")
    return tensor


def require_rank(tensor, rank, name, layout):
    if tensor.shape.rank is not None and tensor.shape.rank != rank:
        raise ValueError(f"{name} must be a {rank}-D tensor {layout}, got shape {tensor.shape}")


def to_channels_last(tensor, name=None):
    """[N, C, H, W] -> [N, H, W, C]. When the rank is not known statically, a run-time
    shape check that names the argument (`name`) runs before the transpose."""
    if name is not None and tensor.shape.rank is None:
        # TensorFlow's message names the failing node: name it after the argument.
        tensor = tf.ensure_shape(tensor, [None] * 4, name=f"{name}_must_be_4d_nchw")
    return tf.transpose(tensor, [0, 2, 3, 1])


def to_channels_first(tensor):
    return tf.transpose(tensor, [0, 3, 1, 2])


def real_tensor(value, name, dtype):
    """`value` (any float or integer tensor or array) cast to `dtype`."""
    tensor = _convert_python_value(value, dtype)
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer) or tensor.dtype == tf.bool:
        raise TypeError(f"{name} must be a float or integer tensor, got {tensor.dtype.name}")
    return tf.cast(tensor, dtype)


def finite_float(value, name, positive=False):
    """A finite real number (> 0 with `positive`) as a Python float."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) \
            or (positive and not value > 0):
        kind = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return float(value)


def integer(value, name):
    """An int (not a bool), as a Python int."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return int(value)
