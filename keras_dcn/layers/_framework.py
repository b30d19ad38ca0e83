"""What the layers take from a Keras flavour (Keras 3 or tf_keras), written once.

A layer body (`DeformConv2DBase`, `DeformRoIPoolBase`) reaches its framework only
through `self._framework`, a `Framework`; everything else it does is plain TensorFlow,
so both flavours run the same graph. `plain` and `shape_list` turn what the frameworks
hand back (tracked lists, `TensorShape`s) into plain Python values.
"""

import numbers

import tensorflow as tf

from keras_dcn.ops import _args

# Package under which both frameworks register the layers ("keras_dcn>DeformConv2D").
PACKAGE = "keras_dcn"


class Framework:
    """The pieces of a Keras flavour (`keras` 3 or `tf_keras`) the layers use."""

    def __init__(self, name, initializers, regularizers, constraints, activations,
                 input_spec, image_data_format, get_uid, check=None):
        self.name = name
        self.initializers = initializers
        self.regularizers = regularizers
        self.constraints = constraints
        self.activations = activations
        self.InputSpec = input_spec
        self.image_data_format = image_data_format
        self.get_uid = get_uid
        self.check = check or (lambda layer_name: None)

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
