"""What the layers take from a Keras flavour (Keras 3 or tf_keras), written once.

A layer body (`DeformConv2DBase`, `DeformRoIPoolBase`) reaches its framework only
through `self._framework`, a `Framework`, and computes with the array namespace
(`xp`) and the ops (`ops`) it names for the backend in use: plain TensorFlow and
`keras_dcn.ops` where Keras runs on TensorFlow (tf_keras always does), so that both
flavours run the same graph there; `keras.ops` and the ops' composites in it
(`keras_dcn.ops._keras_composite`) on Keras 3's other backends. `plain` and
`shape_list` turn what the frameworks hand back (tracked lists, `TensorShape`s) into
plain Python values.
"""

import numbers

import tensorflow as tf

from keras_dcn import ops as dcn_ops
from keras_dcn.ops import _args
from keras_dcn.ops import _array_namespace
from keras_dcn.ops import _implementation
from keras_dcn.ops import _keras_composite

# Package under which both frameworks register the layers ("keras_dcn>DeformConv2D").
PACKAGE = "keras_dcn"


class Framework:
    """The pieces of a Keras flavour (`keras` 3 or `tf_keras`) the layers use."""

    def __init__(self, name, initializers, regularizers, constraints, activations,
                 input_spec, image_data_format, get_uid, backend=lambda: "tensorflow"):
        self.name = name
        self.initializers = initializers
        self.regularizers = regularizers
        self.constraints = constraints
        self.activations = activations
        self.InputSpec = input_spec
        self.image_data_format = image_data_format
        self.get_uid = get_uid
        self.backend = backend

    @property
    def on_tensorflow(self):
        """Whether the layers run on TensorFlow (Keras' backend, or tf_keras)."""
        return self.backend() == "tensorflow"

    @property
    def xp(self):
        """The array namespace of the backend in use (`keras_dcn.ops._array_namespace`)."""
        return _array_namespace.TENSORFLOW if self.on_tensorflow else _array_namespace.KERAS

    @property
    def ops(self):
        """What gives `deform_conv2d` and `deform_roi_pool` (channels_last, the layers'
        keyword arguments) on the backend in use."""
        return dcn_ops if self.on_tensorflow else _keras_composite

    def implementation(self, value):
        """`value` checked as an `implementation` the backend in use can run."""
        _implementation.check(value)
        if not self.on_tensorflow:
            _keras_composite.refuse_custom(value)
        return value

    def supports_jit(self, implementation):
        """Whether Keras may compile a layer of `implementation` (`Layer.supports_jit`)."""
        return not self.on_tensorflow or _implementation.supports_xla(implementation)

    def unique_name(self, prefix):
        """`prefix`, then `prefix_1`, `prefix_2`, ... (Keras' naming of layers)."""
        uid = self.get_uid(prefix)
        return prefix if uid == 1 else f"{prefix}_{uid - 1}"

    def data_format(self, value):
        """`"channels_last"` or `"channels_first"` (any case); None for the framework's
        default image data format."""
        if value is None:
            value = self.image_data_format()
        return _args.data_format(str(value).lower())


def plain(value):
    """Nested tuples / lists (possibly wrapped by a framework's tracking) as tuples."""
    if isinstance(value, (str, numbers.Number)) or value is None:
        return value
    return tuple(plain(v) for v in value)


def shape_list(shape):
    """A shape (tuple, list or TensorShape) as a list of ints / None."""
    return list(tf.TensorShape(shape).as_list())
