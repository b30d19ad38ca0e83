"""The array operations the composite implementations and the layers are written in.

`keras_dcn.ops._deform_conv_composite`, `keras_dcn.ops._deform_roi_pool_composite` and
the layers' bodies (`keras_dcn.layers`) compute with the functions of a namespace
rather than with TensorFlow's directly. `TENSORFLOW` gives plain TensorFlow ops (which
XLA, TF Serving and LiteRT take, and tf_keras runs); `KERAS` gives `keras.ops`,
whatever Keras' backend, with the same names and NumPy's meaning, so that one text of
the math serves both. `dims(x)` gives a tensor's dimensions, static where known and as
scalar tensors where not.
"""

import keras
import tensorflow as tf

from keras_dcn.ops import _padding


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
    convert_to_tensor = staticmethod(tf.convert_to_tensor)
    matmul = staticmethod(tf.matmul)
    relu = staticmethod(tf.nn.relu)
    sigmoid = staticmethod(tf.sigmoid)
    stop_gradient = staticmethod(tf.stop_gradient)

    @staticmethod
    def split_last(x, index):
        """`(x[..., :index], x[..., index:])`, as one op (whose gradient is one concat);
        the last dimension of `x` must be static."""
        return tf.split(x, [index, x.shape[-1] - index], axis=-1)

    @staticmethod
    def conv2d(x, kernel, strides, dilations, padding):
        """Cross-correlation of channels_last `x` `[N, H, W, C]` with `kernel`
        `[kh, kw, C, O]`; `padding` in any form of `keras_dcn.ops._padding`."""
        # TensorFlow's CPU kernels have no gradient of a dilated Conv2D with explicit
        # padding, nor in float64: so padded first, and when not strided through
        # tf.nn.convolution, which computes a dilated convolution from an undilated one
        # (and refuses strides with dilation).
        mode, pads = _padding.parse(padding)
        if mode == "EXPLICIT":
            top, bottom, left, right = pads
            if top or bottom or left or right:
                x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
            mode = "VALID"
        conv = tf.nn.convolution if max(strides) == 1 else tf.nn.conv2d
        return conv(x, kernel, strides=strides, padding=mode, dilations=dilations)

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
    """`keras.ops`, on Keras' current backend, in the dtype of its inputs (float64
    included). Indices are int32 (JAX's default), so an input may hold at most
    2**31 - 1 elements."""

    index_dtype = "int32"
    cast = staticmethod(keras.ops.cast)
    concatenate = staticmethod(keras.ops.concatenate)
    einsum = staticmethod(keras.ops.einsum)
    logical_and = staticmethod(keras.ops.logical_and)
    max = staticmethod(keras.ops.max)
    reshape = staticmethod(keras.ops.reshape)
    transpose = staticmethod(keras.ops.transpose)
    where = staticmethod(keras.ops.where)
    zeros = staticmethod(keras.ops.zeros)
    zeros_like = staticmethod(keras.ops.zeros_like)
    convert_to_tensor = staticmethod(keras.ops.convert_to_tensor)
    relu = staticmethod(keras.ops.relu)
    sigmoid = staticmethod(keras.ops.sigmoid)
    stop_gradient = staticmethod(keras.ops.stop_gradient)

    @staticmethod
    def split_last(x, index):
        """`(x[..., :index], x[..., index:])`."""
        return tuple(keras.ops.split(x, [index], axis=-1))

    # keras.ops.floor, ceil and maximum compute float64 in float32 on the PyTorch
    # backend (Keras' type promotion); the operators keep the dtype on every backend.
    # Floor and ceil have a zero derivative, which PyTorch's `//` does not define.
    @staticmethod
    def floor(x):
        """The largest integer <= `x`, elementwise (for finite `x`); no gradient."""
        return keras.ops.stop_gradient(x) // 1

    @staticmethod
    def ceil(x):
        """The smallest integer >= `x`, elementwise (for finite `x`); no gradient."""
        return -((-keras.ops.stop_gradient(x)) // 1)

    @staticmethod
    def maximum(a, b):
        """The larger of `a` and `b` (a tensor or a number), in the dtype of `a`."""
        return keras.ops.where(a < b, keras.ops.zeros_like(a) + b, a)

    @staticmethod
    def matmul(a, b):
        """The matrix product of 2-D `a` and `b`, in their dtype (`keras.ops.matmul`
        computes float64 in float32 on the PyTorch backend)."""
        return keras.ops.einsum("ij,jk->ik", a, b)

    @staticmethod
    def conv2d(x, kernel, strides, dilations, padding):
        """Cross-correlation of channels_last `x` `[N, H, W, C]` with `kernel`
        `[kh, kw, C, O]`; `padding` in any form of `keras_dcn.ops._padding`, with
        TensorFlow's rule for SAME (so the spatial size of `x` must be static)."""
        size = tuple(x.shape[1:3])
        if None in size:
            raise ValueError(
                f"the spatial size of the inputs must be known here, got shape {x.shape}")
        top, bottom, left, right = _padding.resolve(size, tuple(kernel.shape[:2]), strides,
                                                    dilations, padding)
        if top or bottom or left or right:
            x = keras.ops.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
        return keras.ops.conv(x, kernel, strides=strides, padding="valid",
                              data_format="channels_last", dilation_rate=dilations)

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
