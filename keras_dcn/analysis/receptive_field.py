"""Effective receptive field of a node (Section 2.1 of the paper; Luo et al. 2016).

The value at a pixel is the magnitude of the gradient of the node's response with
respect to that pixel's intensities: with `s` the sum of the node's values
(`nodes.scalar_response`) and `image` `[1, H, W, C]`,
`erf[y, x] = || d s / d image[0, y, x, :] ||_2` over the colour channels, divided by its
maximum so that the strongest pixel is 1 (all zeros when no pixel matters).
"""

import numpy as np
import tensorflow as tf

from keras_dcn.analysis import nodes


def receptive_field_gradient(node: nodes.Node, image) -> np.ndarray:
    """`d s / d image` as float32 `[H, W, C]` (not normalised); `image` `[H, W, C]` or
    `[1, H, W, C]`."""
    images = nodes.image_batch(image)
    with tf.GradientTape() as tape:
        tape.watch(images)
        response = nodes.scalar_response(node(images))
    gradient = tape.gradient(response, images)
    if gradient is None:
        return np.zeros(images.shape[1:], np.float32)
    return gradient[0].numpy()


def effective_receptive_field(node: nodes.Node, image) -> np.ndarray:
    """The node's effective receptive field, float32 `[H, W]` in `[0, 1]`.

    Args:
      node: `node(images [1, H, W, C]) -> response` (see `keras_dcn.analysis.nodes`).
      image: `[H, W, C]` or `[1, H, W, C]`, in the units the node expects.
    """
    magnitude = np.linalg.norm(receptive_field_gradient(node, image), axis=-1)
    peak = magnitude.max()
    return (magnitude / peak if peak > 0 else magnitude).astype(np.float32)
