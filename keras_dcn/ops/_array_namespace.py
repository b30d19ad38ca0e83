"""The array operations the composite implementations are written in.

`keras_dcn.ops._deform_conv_composite` and `keras_dcn.ops._deform_roi_pool_composite`
compute with the functions of a namespace passed to them rather than with TensorFlow's
directly. `TENSORFLOW` gives plain TensorFlow ops (which XLA, TF Serving and LiteRT
take); its functions have NumPy's names and meaning, as `keras.ops`' do, so that the
same text of the math can serve Keras' other backends. `dims(x)` gives a tensor's
dimensions, static where known and as scalar tensors where not.
"""

import tensorflow as tf


class TensorFlowNamespace:
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

    def size_as(self, size, dtype):
        """A dimension from `dims` as a number of `dtype`: itself when static."""
        return size if isinstance(size, int) else self.cast(size, dtype)


TENSORFLOW = TensorFlowNamespace()
