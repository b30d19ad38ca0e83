"""Nodes to analyse: a network's response at one place, as a function of the image.

A node is a callable `node(images) -> response` taking float32 images `[1, H, W, C]`
(channels_last, batch of one) and returning the node's response, a vector `[D]` (the
channels of a feature-map position, the fc features of a RoI) or a scalar. The
analysis functions differentiate it with respect to the image and to the deformable
layers' sampling locations, so it must be built from TensorFlow operations and run
eagerly.

* `spatial_node(model, layer, (row, col))`: the channels of `layer`'s output at one
  position, for Keras 3 and tf_keras functional / Sequential models.
* `deformable_layers(model)`: the `DeformConv2D` / `DeformRoIPool` layers inside a
  model, either framework.
* `scalar_response(response)`: the scalar the gradients are taken of (the sum over the
  node's channels, the convention of Luo et al.'s effective receptive fields).
* `image_batch(image)`: `[H, W, C]` or `[1, H, W, C]` as a float32 batch of one.
"""

from typing import Callable, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from keras_dcn.layers._deform_conv_base import DeformConv2DBase
from keras_dcn.layers._deform_roi_pool_base import DeformRoIPoolBase

Node = Callable[[tf.Tensor], tf.Tensor]


def image_batch(image) -> tf.Tensor:
    """`image` `[H, W, C]` or `[1, H, W, C]` as a float32 tensor `[1, H, W, C]`."""
    image = tf.convert_to_tensor(np.asarray(image) if not tf.is_tensor(image) else image)
    if image.shape.rank == 3:
        image = image[None]
    if image.shape.rank != 4 or image.shape[0] != 1:
        raise ValueError(
            f"image must have shape [H, W, C] or [1, H, W, C], got {tuple(image.shape)}")
    return tf.cast(image, tf.float32)


def scalar_response(response: tf.Tensor) -> tf.Tensor:
    """The scalar whose gradients the analysis takes: the sum of the node's values."""
    return tf.reduce_sum(tf.cast(response, tf.float32))


def _framework_model(model):
    """The `Model` class of `model`'s framework (Keras 3 or tf_keras)."""
    import keras
    if isinstance(model, keras.Model):
        return keras.Model
    import tf_keras  # only for tf_keras models: `import keras_dcn` does not need it
    if isinstance(model, tf_keras.Model):
        return tf_keras.Model
    raise ValueError(
        f"model must be a Keras 3 or tf_keras Model, got {type(model).__name__}")


def spatial_node(model, layer: Union[str, object], position: Tuple[int, int]) -> Node:
    """The channels of `layer`'s output at `position` as a node.

    Args:
      model: a functional or Sequential model (Keras 3 or tf_keras) with one input.
      layer: a layer of `model` (or its name) whose output is channels_last
        `[1, h, w, C]`.
      position: `(row, col)` on that output.

    Returns:
      `node(images [1, H, W, Cin]) -> [C]`.
    """
    model_class = _framework_model(model)
    if isinstance(layer, str):
        layer = model.get_layer(layer)
    try:
        row, col = (int(v) for v in position)
    except (TypeError, ValueError):
        raise ValueError(f"position must be a pair (row, col) of ints, got {position!r}") \
            from None
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    features = model_class(inputs, layer.output)

    def node(images):
        outputs = features(images, training=False)
        if outputs.shape.rank != 4:
            raise ValueError(f"the output of layer {layer.name!r} must be [1, h, w, C], "
                             f"got shape {tuple(outputs.shape)}")
        height, width = outputs.shape[1], outputs.shape[2]
        if not (0 <= row < height and 0 <= col < width):
            raise ValueError(f"position {(row, col)} lies outside the {height} x {width} "
                             f"output of layer {layer.name!r}")
        return outputs[0, row, col]

    return node


def deformable_layers(model) -> Sequence:
    """The `DeformConv2D` and `DeformRoIPool` layers of `model` (either framework),
    nested ones included, in the order the framework lists them."""
    # Both frameworks list nested layers with `_flatten_layers`.
    layers = model._flatten_layers(include_self=True, recursive=True)
    return [layer for layer in layers
            if isinstance(layer, (DeformConv2DBase, DeformRoIPoolBase))]
