"""Where the deformable layers read, in the pixel coordinates of the layer's input
(pixel `(r, c)` has its centre at `(r, c)`), for layers of either framework.

* `sampling_points(layer, offsets, (H, W))`: the point each tap of a `DeformConv2D`
  reads, `y = ho * stride_h - pad_top + i * dilation_h + dy` and likewise `x`.
* `roi_boxes(layer, rois)`: the RoIs of a `DeformRoIPool` on its feature map.
* `bin_centres(layer, rois, offsets)`: the centre of each (moved) bin of a
  `DeformRoIPool`, the mean of the bin's samples.

The offsets are those the layer hands its op, as a sampling hook sees them
(`set_sampling_hook` on the layers).
"""

import tensorflow as tf

from keras_dcn.ops import _padding


def sampling_points(layer, offsets, input_size) -> tf.Tensor:
    """Where each tap of a `DeformConv2D` reads.

    Args:
      layer: a `DeformConv2D` (Keras 3 or tf_keras).
      offsets: `[N, Ho, Wo, 2 * dg * kh * kw]`, the op's channel order.
      input_size: `(H, W)` of the layer's input.

    Returns:
      `[N, Ho, Wo, dg * kh * kw, 2]` points `(y, x)`:
      `y = ho * stride_h - pad_top + i * dilation_h + dy` and likewise `x`, with the
      padding the op applies (TensorFlow's rule for SAME).
    """
    offsets = tf.convert_to_tensor(offsets)
    top, _, left, _ = _padding.resolve(input_size, layer.kernel_size, layer.strides,
                                       layer.dilation_rate, layer.padding)
    kh, kw = layer.kernel_size
    groups = layer.deformable_groups
    shape = tf.shape(offsets)
    ho = tf.range(shape[1], dtype=offsets.dtype) * layer.strides[0] - top
    wo = tf.range(shape[2], dtype=offsets.dtype) * layer.strides[1] - left
    ti = tf.range(kh, dtype=offsets.dtype) * layer.dilation_rate[0]
    tj = tf.range(kw, dtype=offsets.dtype) * layer.dilation_rate[1]
    grid = [shape[1], shape[2], kh, kw]
    base_y = tf.broadcast_to(ho[:, None, None, None] + ti[None, None, :, None], grid)
    base_x = tf.broadcast_to(wo[None, :, None, None] + tj[None, None, None, :], grid)
    base = tf.reshape(tf.stack([base_y, base_x], -1),
                      [1, shape[1], shape[2], 1, kh * kw, 2])
    deltas = tf.reshape(offsets, [shape[0], shape[1], shape[2], groups, kh * kw, 2])
    return tf.reshape(base + deltas, [shape[0], shape[1], shape[2], groups * kh * kw, 2])


def roi_boxes(layer, rois):
    """The RoIs of a `DeformRoIPool` on its feature map, in the map's pixel coordinates.

    Args:
      layer: a `DeformRoIPool` (Keras 3 or tf_keras).
      rois: `[R, 5]` rows `(batch_index, x1, y1, x2, y2)` in image pixels.

    Returns:
      `(y0, x0, height, width)`, each float32 `[R]`: after `spatial_scale`, the
      `aligned` shift and, without it, the one-pixel minimum size.
    """
    rois = tf.cast(tf.convert_to_tensor(rois), tf.float32)
    shift = 0.5 if layer.aligned else 0.0
    x0 = rois[:, 1] * layer.spatial_scale - shift
    y0 = rois[:, 2] * layer.spatial_scale - shift
    width = (rois[:, 3] - rois[:, 1]) * layer.spatial_scale
    height = (rois[:, 4] - rois[:, 2]) * layer.spatial_scale
    if not layer.aligned:
        width, height = tf.maximum(width, 1.0), tf.maximum(height, 1.0)
    return y0, x0, height, width


def bin_centres(layer, rois, offsets=None) -> tf.Tensor:
    """Centre of each (moved) bin of a `DeformRoIPool`, in the feature map's pixel
    coordinates.

    Args:
      layer: a `DeformRoIPool` (Keras 3 or tf_keras).
      rois: `[R, 5]` rows `(batch_index, x1, y1, x2, y2)` in image pixels.
      offsets: `[R, oh, ow, 2]` normalised `(dy, dx)`, or None for none.

    Returns:
      float32 `[R, oh, ow, 2]` points `(y, x)`: `y0 + (ph + 0.5) * height / oh +
      gamma * height * dy` and likewise `x` (the mean of the bin's samples).
    """
    y0, x0, height, width = roi_boxes(layer, rois)
    oh, ow = layer.output_size
    ph = (tf.range(oh, dtype=tf.float32) + 0.5) / oh
    pw = (tf.range(ow, dtype=tf.float32) + 0.5) / ow
    y = y0[:, None, None] + height[:, None, None] * ph[None, :, None]
    x = x0[:, None, None] + width[:, None, None] * pw[None, None, :]
    y = tf.broadcast_to(y, [tf.size(y0), oh, ow])
    x = tf.broadcast_to(x, [tf.size(y0), oh, ow])
    if offsets is not None:
        offsets = tf.cast(offsets, tf.float32)
        y = y + layer.gamma * height[:, None, None] * offsets[..., 0]
        x = x + layer.gamma * width[:, None, None] * offsets[..., 1]
    return tf.stack([y, x], -1)
