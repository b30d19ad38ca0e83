"""Random cases of `keras_dcn.ops.deform_roi_pool` for the op tests: RoIs, the case, and
the op and the plain-TensorFlow reference (tests/reference.py) run on it with their
gradients."""

import numpy as np
import tensorflow as tf

from keras_dcn.ops import deform_roi_pool
from tests import reference

# The op's options, one set a test: the keyword arguments of the reference tests of
# each implementation.
OPTIONS = [
    dict(),
    dict(output_size=(7, 7), sampling_ratio=2),
    dict(output_size=(14, 14), sampling_ratio=1, spatial_scale=1.0),
    dict(output_size=(2, 5), sampling_ratio=0),
    dict(output_size=(5, 2), sampling_ratio=-1, aligned=False),
    dict(output_size=(3, 3), sampling_ratio=3, aligned=False, gamma=1.0),
    dict(output_size=(4, 3), gamma=0.0),
    dict(output_size=(3, 4), gamma=-0.5, spatial_scale=0.125),
    dict(output_size=1, sampling_ratio=0, spatial_scale=0.25),
]


def random_rois(rng, count, batch, image_height, image_width, outside=0.2):
    """Boxes in image pixels, some reaching past the image border, in float64 (the op
    reads them so for float64 features; the other dtypes round them to float32)."""
    size = np.array([image_width, image_height, image_width, image_height])
    corners = rng.uniform(-outside, 1 + outside, size=(count, 4)) * size
    x1, x2 = np.minimum(corners[:, 0], corners[:, 2]), np.maximum(corners[:, 0], corners[:, 2])
    y1, y2 = np.minimum(corners[:, 1], corners[:, 3]), np.maximum(corners[:, 1], corners[:, 3])
    index = rng.integers(0, batch, size=count)
    return np.stack([index, x1, y1, x2, y2], axis=1)


def make_case(rng, batch=2, height=9, width=11, channels=5, num_rois=4,
              output_size=(3, 4), spatial_scale=0.5, offset_scale=1.0, dtype=np.float64):
    """`(features [N, H, W, C], rois [R, 5], offsets [R, oh, ow, 2], mask [R, oh, ow, 1])`
    drawn from `rng`, the boxes some way past the image border."""
    features = rng.normal(size=(batch, height, width, channels)).astype(dtype)
    rois = random_rois(rng, num_rois, batch, height / spatial_scale, width / spatial_scale)
    offsets = (offset_scale * rng.normal(size=(num_rois, *output_size, 2))).astype(dtype)
    mask = rng.uniform(0.0, 1.0, size=(num_rois, *output_size, 1)).astype(dtype)
    return features, rois, offsets, mask


def op_and_grads(features, rois, offsets, mask, upstream=None, **kwargs):
    """Output of `deform_roi_pool` and the gradients of sum(output * upstream)."""
    features, offsets, mask = (tf.constant(v) for v in (features, offsets, mask))
    with tf.GradientTape() as tape:
        tape.watch([features, offsets, mask])
        out = deform_roi_pool(features, rois, offsets, mask, **kwargs)
        if upstream is None:
            upstream = tf.cast(tf.reshape(
                tf.range(tf.size(out)) % 7 - 3, out.shape), out.dtype)
        loss = tf.reduce_sum(out * upstream)
    return out, tape.gradient(loss, [features, offsets, mask]), upstream


def reference_and_grads(features, rois, offsets, mask, upstream, **kwargs):
    """Output of the reference, computed in float64, and the gradients of
    sum(output * upstream)."""
    features, offsets, mask = (
        tf.constant(np.asarray(v, np.float64)) for v in (features, offsets, mask))
    with tf.GradientTape() as tape:
        tape.watch([features, offsets, mask])
        out = reference.deform_roi_pool(features, rois, offsets, mask, **kwargs)
        loss = tf.reduce_sum(out * tf.cast(upstream, tf.float64))
    return out, tape.gradient(loss, [features, offsets, mask])
