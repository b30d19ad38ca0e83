"""The array operations the composite implementations are written in.

`keras_dcn.ops._deform_conv_composite` and `keras_dcn.ops._deform_roi_pool_composite`
compute with the functions of a namespace passed to them rather than with TensorFlow's
directly. `TENSORFLOW` gives plain TensorFlow ops (which XLA, TF Serving and LiteRT
take); `KERAS` gives `keras.ops`, whatever Keras' backend, with the same names and
NumPy's meaning, so that one text of the math serves both. `dims(x)` gives a tensor's
dimensions, static where known and as scalar tensors where not.
"""

import keras
import tensorflow as tf


class _Namespace:
    """What both flavours share; each gives `cast` and the other functions."""

    def size_as(self, size, dtype):
        """A dimension from `dims` as a number of `dtype`: itself when static."""
        return size if isinstance(size, int) else self.cast(size, dtype)


class TensorFlowNamespace(_Namespace):
    """Plain TensorFlow ops."""

    index_dtype = "int64"
    arange = staticmethod(tf.range)
    cast = staticmethod(tf.cast)
    ceil = staticmethod(tf.math.ceil)
    concatenate = staticmethod(tf.concat)
    einsum = staticmethod(tf.einsum)
    floor = staticmethod(tf.math.floor)
    logical_and = staticmethod(tf.logical_and)
    maximum = staticmethod(tf.maximum)
    reshape = staticmethod(tf.reshape)
    transpose = staticmethod(tf.transpose)
    where = staticmethod(tf.where)
    zeros = staticmethod(tf.zeros)
    zeros_like = staticmethod(tf.zeros_like)

    @staticmethod
    def take(x, indices):
        """The rows `indices` (any shape) of `x`: `x[indices]`."""
        return tf.gather(x, indices)

    @staticmethod
    def max(x):
        """The largest element of `x`."""
        return tf.reduce_max(x)

    @staticmethod
    def sum(x, axis):
        """`x` summed over `axis` (an int or a tuple)."""
        return tf.reduce_sum(x, axis=axis)

    @staticmethod
    def dims(x):
        """The dimensions of `x`: ints where static, scalar tensors where not."""
        dynamic = tf.shape(x)
        return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape)]


TENSORFLOW = TensorFlowNamespace()


class KerasNamespace(_Namespace):
    """`keras.ops`, on Keras' current backend. Indices are int32 (JAX's default), so
    an input may hold at most 2**31 - 1 elements."""

    index_dtype = "int32"
    cast = staticmethod(keras.ops.cast)
    ceil = staticmethod(keras.ops.ceil)
    concatenate = staticmethod(keras.ops.concatenate)
    einsum = staticmethod(keras.ops.einsum)
    floor = staticmethod(keras.ops.floor)
    logical_and = staticmethod(keras.ops.logical_and)
    maximum = staticmethod(keras.ops.maximum)
    max = staticmethod(keras.ops.max)
    reshape = staticmethod(keras.ops.reshape)
    transpose = staticmethod(keras.ops.transpose)
    where = staticmethod(keras.ops.where)
    zeros = staticmethod(keras.ops.zeros)
    zeros_like = staticmethod(keras.ops.zeros_like)

    @staticmethod
    def arange(stop, dtype=None):
        """`0, 1, ..., stop - 1`."""
        return keras.ops.arange(stop, dtype=dtype)

    @staticmethod
    def take(x, indices):
        """The rows `indices` (any shape) of `x`: `x[indices]`."""
        return keras.ops.take(x, indices, axis=0)

    @staticmethod
    def sum(x, axis):
        """`x` summed over `axis` (an int or a tuple)."""
        return keras.ops.sum(x, axis=axis)

    @staticmethod
    def dims(x):
        """The dimensions of `x`: ints where static, scalar tensors where not."""
        return list(keras.ops.shape(x))


KERAS = KerasNamespace()
