"""Slow, obvious references for the ops, written in plain TensorFlow for the tests.

They share no code with the kernels: sampling is done with gathers and the gradients
come from TensorFlow's autodiff of these formulas.
"""

import numpy as np
import tensorflow as tf


def _bilinear_zero_padded(image, y, x, group):
    """Bilinear reads of `image` [N, H, W, G, Cg] at (y, x) of deformable group
    `group`; y, x: [N, ...]. Points at or beyond (-1, H) x (-1, W) read 0.
    Returns [N, ..., Cg]."""
    height, width = image.shape[1], image.shape[2]
    inside = (y > -1) & (y < height) & (x > -1) & (x < width)
    y0 = tf.stop_gradient(tf.floor(y))
    x0 = tf.stop_gradient(tf.floor(x))
    ly, lx = y - y0, x - x0
    result = 0.0
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yy, xx = y0 + dy, x0 + dx
            ok = inside & (yy >= 0) & (yy <= height - 1) & (xx >= 0) & (xx <= width - 1)
            idx = tf.stack(
                [
                    tf.cast(tf.clip_by_value(yy, 0, height - 1), tf.int32),
                    tf.cast(tf.clip_by_value(xx, 0, width - 1), tf.int32),
                    tf.broadcast_to(group, yy.shape),
                ],
                axis=-1,
            )
            values = tf.gather_nd(image, idx, batch_dims=1)
            weight = tf.where(ok, wy * wx, tf.zeros_like(wy))
            result = result + weight[..., None] * values
    return result


def deform_conv2d(inputs, offsets, kernel, mask=None, bias=None, strides=(1, 1),
                  pads=(0, 0, 0, 0), dilations=(1, 1), groups=1, deformable_groups=1):
    """Channels-last reference of Eq. (1). pads = (top, bottom, left, right)."""
    inputs = tf.convert_to_tensor(inputs)
    n, h, w, c = inputs.shape
    kh, kw, cg, filters = kernel.shape
    sh, sw = strides
    dh, dw = dilations
    top, bottom, left, right = pads
    dg = deformable_groups
    ho = (h + top + bottom - ((kh - 1) * dh + 1)) // sh + 1
    wo = (w + left + right - ((kw - 1) * dw + 1)) // sw + 1
    off = tf.reshape(offsets, [n, ho, wo, dg, kh, kw, 2])
    base_y = (np.arange(ho) * sh - top)[:, None, None, None, None] + (np.arange(kh) * dh)[:, None]
    base_x = (np.arange(wo) * sw - left)[:, None, None, None] + (np.arange(kw) * dw)
    y = tf.cast(base_y, off.dtype) + off[..., 0]  # [n, ho, wo, dg, kh, kw]
    x = tf.cast(base_x, off.dtype) + off[..., 1]
    group = tf.broadcast_to(tf.reshape(tf.range(dg), [1, 1, 1, dg, 1, 1]), y.shape)
    image = tf.reshape(inputs, [n, h, w, dg, c // dg])
    sampled = _bilinear_zero_padded(image, y, x, group)  # [n, ho, wo, dg, kh, kw, c/dg]
    if mask is not None:
        sampled = sampled * tf.reshape(mask, [n, ho, wo, dg, kh, kw])[..., None]
    sampled = tf.transpose(sampled, [0, 1, 2, 4, 5, 3, 6])
    sampled = tf.reshape(sampled, [n, ho, wo, kh, kw, groups, c // groups])
    k = tf.reshape(kernel, [kh, kw, cg, groups, filters // groups])
    out = tf.einsum("nhwijgc,ijcgf->nhwgf", sampled, k)
    out = tf.reshape(out, [n, ho, wo, filters])
    if bias is not None:
        out = out + bias
    return out


def _roi_align_read(features, batch, y, x):
    """RoIAlign's bilinear read of `features` [N, H, W, C] at points (y, x) of images
    `batch` (all [...]): 0 beyond [-1, H] x [-1, W], clamped into the map inside it.
    Returns [..., C]."""
    height, width = features.shape[1], features.shape[2]
    inside = (y >= -1) & (y <= height) & (x >= -1) & (x <= width)

    def axis(c, size):
        c = tf.where(inside, c, tf.zeros_like(c))  # keeps NaN / inf out of the indices
        c = tf.where(c <= 0, tf.zeros_like(c), c)
        low = tf.stop_gradient(tf.floor(c))
        last = tf.cast(size - 1, c.dtype) * tf.ones_like(c)
        at_end = low >= size - 1
        low = tf.where(at_end, last, low)
        high = tf.where(at_end, last, low + 1)
        c = tf.where(at_end, low, c)
        frac = c - low
        return (low, 1 - frac), (high, frac)

    result = 0.0
    for row, wy in axis(y, height):
        for col, wx in axis(x, width):
            idx = tf.stack([batch, tf.cast(row, tf.int32), tf.cast(col, tf.int32)], axis=-1)
            weight = tf.where(inside, wy * wx, tf.zeros_like(wy))
            result = result + weight[..., None] * tf.gather_nd(features, idx)
    return result


def deform_roi_pool(features, rois, offsets=None, mask=None, output_size=(7, 7),
                    spatial_scale=1.0, sampling_ratio=2, gamma=0.1, aligned=True):
    """Channels-last reference of Eq. (2): features [N, H, W, C], rois [R, 5] (numpy
    values), offsets [R, oh, ow, 2], mask [R, oh, ow, 1].

    Computes in float64 for float64 features, with the RoIs, spatial_scale and gamma
    as given; otherwise in float32, with all three rounded to float32 first. Returns
    [R, oh, ow, C] in that dtype. Every RoI's samples are padded to the largest grid
    and the padding is weighted 0."""
    features = tf.convert_to_tensor(features)
    dtype = tf.float64 if features.dtype == tf.float64 else tf.float32
    np_dtype = dtype.as_numpy_dtype
    features = tf.cast(features, dtype)
    rois = np.asarray(rois, np_dtype).reshape(-1, 5)
    oh, ow = output_size
    num_rois = rois.shape[0]

    # Boxes on the feature map, in the compute dtype.
    scale = np_dtype(spatial_scale)
    gamma = np_dtype(gamma)
    scaled = rois[:, 1:] * scale
    shift = np_dtype(0.5 if aligned else 0.0)
    start_x, start_y = scaled[:, 0] - shift, scaled[:, 1] - shift
    roi_w, roi_h = scaled[:, 2] - scaled[:, 0], scaled[:, 3] - scaled[:, 1]
    if not aligned:
        roi_w, roi_h = np.maximum(roi_w, np_dtype(1)), np.maximum(roi_h, np_dtype(1))
    bin_h, bin_w = roi_h / np_dtype(oh), roi_w / np_dtype(ow)
    if sampling_ratio > 0:
        grid_h = np.full(num_rois, sampling_ratio)
        grid_w = np.full(num_rois, sampling_ratio)
    else:
        grid_h = np.maximum(np.ceil(bin_h), 1).astype(np.int64)
        grid_w = np.maximum(np.ceil(bin_w), 1).astype(np.int64)
    max_h = int(grid_h.max()) if num_rois else 1
    max_w = int(grid_w.max()) if num_rois else 1

    if offsets is None:
        offsets = tf.zeros([num_rois, oh, ow, 2], dtype)
    if mask is None:
        mask = tf.ones([num_rois, oh, ow, 1], dtype)
    offsets = tf.cast(offsets, dtype)
    mask = tf.cast(mask, dtype)

    def per_roi(a):  # [R] -> [R, 1, 1, 1]
        return np.asarray(a).astype(np_dtype).reshape(-1, 1, 1, 1)

    # Bin corners [R, oh, ow, 1], moved by the offsets.
    ph = np.arange(oh).reshape(1, oh, 1, 1).astype(np_dtype)
    pw = np.arange(ow).reshape(1, 1, ow, 1).astype(np_dtype)
    bin_y = tf.constant(per_roi(start_y) + ph * per_roi(bin_h)) + \
        tf.constant(gamma * per_roi(roi_h)) * offsets[..., 0:1]
    bin_x = tf.constant(per_roi(start_x) + pw * per_roi(bin_w)) + \
        tf.constant(gamma * per_roi(roi_w)) * offsets[..., 1:2]
    # Sample points [R, oh, ow, max_h, max_w].
    iy = np.arange(max_h).astype(np_dtype).reshape(1, 1, 1, -1) + np_dtype(0.5)
    ix = np.arange(max_w).astype(np_dtype).reshape(1, 1, 1, -1) + np_dtype(0.5)
    y = bin_y + tf.constant(iy * per_roi(bin_h) / per_roi(grid_h))
    x = bin_x + tf.constant(ix * per_roi(bin_w) / per_roi(grid_w))
    shape = [num_rois, oh, ow, max_h, max_w]
    y = tf.broadcast_to(y[..., :, None], shape)
    x = tf.broadcast_to(x[..., None, :], shape)
    used = (np.arange(max_h).reshape(1, -1, 1) < grid_h.reshape(-1, 1, 1)) & \
           (np.arange(max_w).reshape(1, 1, -1) < grid_w.reshape(-1, 1, 1))  # [R, gh, gw]
    used = tf.constant(used[:, None, None].astype(np_dtype))
    batch = tf.broadcast_to(
        tf.constant(rois[:, 0].astype(np.int32).reshape(-1, 1, 1, 1, 1)), shape)

    values = _roi_align_read(features, batch, y, x) * used[..., None]
    count = tf.constant(per_roi(grid_h * grid_w))
    return tf.reduce_sum(values, axis=[3, 4]) / count * mask
