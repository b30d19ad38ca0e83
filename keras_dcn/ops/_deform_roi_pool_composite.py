"""Modulated deformable RoI pooling from standard array operations.

The composite implementation of `keras_dcn.ops.deform_roi_pool`: the same boxes,
bins, sample grids and RoIAlign reads as the compiled kernels and, through automatic
differentiation, the same gradients (shared/API.md, section 2), written against an
array namespace (`keras_dcn.ops._array_namespace`).

Every sample of every bin reads its four neighbours with a gather; an adaptive grid
(`sampling_ratio <= 0`) is laid out as large as the largest RoI's, the points past a
RoI's own grid weighed 0, so its size is known only when the RoIs are.
"""


def _axis(xp, coordinate, size, index):
    """RoIAlign's read along one axis of `size` pixels at `coordinate`.

    Returns `(inside, low, high, weight_low, weight_high)`: a point below -1, beyond
    `size` or not a number, or any point of an empty axis, is not inside (it reads 0); a negative coordinate is raised
    to 0, and one whose floor is at or past the last pixel reads that pixel, both with
    no gradient along this axis (the derivative of the clamped formula)."""
    dtype = coordinate.dtype
    inside = xp.logical_and(xp.logical_and(coordinate >= -1, coordinate <= size), size > 0)
    zero = xp.zeros_like(coordinate)
    # Coordinates that are not inside become 0 before any use, so that nothing that
    # depends on them (not even a NaN) reaches the gradient.
    coordinate = xp.where(inside, coordinate, zero)
    coordinate = xp.where(coordinate <= 0, zero, coordinate)
    low = xp.floor(coordinate)
    last = xp.cast(size - 1, dtype) + zero
    at_end = low >= last
    low = xp.where(at_end, last, low)
    frac = xp.where(at_end, zero, coordinate - low)
    low_index = xp.cast(low, index)
    high_index = xp.where(at_end, low_index, low_index + 1)
    return inside, low_index, high_index, 1 - frac, frac


def deform_roi_pool(xp, features, rois, offsets, mask, output_size, spatial_scale,
                    sampling_ratio, gamma, aligned):
    """`deform_roi_pool` in channels_last, computed with the functions of `xp`.

    Args:
      xp: an array namespace (`keras_dcn.ops._array_namespace`).
      features: `[N, H, W, C]`, of the dtype the result is computed in.
      rois: `[R, 5]` `(batch_index, x1, y1, x2, y2)`, of the dtype the geometry is
        computed in (float32, or float64 for float64 features); valid (the caller
        checks them).
      offsets: `[R, oh, ow, 2]` `(dy, dx)` or None; mask: `[R, oh, ow, 1]` or None;
        both of the dtype of `features`.
      output_size: `(oh, ow)` ints; spatial_scale, gamma: floats;
      sampling_ratio: int (`<= 0`: adaptive); aligned: bool.

    Returns:
      `[R, oh, ow, C]`.
    """
    n, h, w, channels = xp.dims(features)
    oh, ow = output_size
    geometry = rois.dtype
    index = xp.index_dtype

    image = xp.cast(rois[:, 0], index)
    x1, y1 = rois[:, 1] * spatial_scale, rois[:, 2] * spatial_scale
    x2, y2 = rois[:, 3] * spatial_scale, rois[:, 4] * spatial_scale
    shift = 0.5 if aligned else 0.0
    box_h, box_w = y2 - y1, x2 - x1
    if not aligned:
        box_h, box_w = xp.maximum(box_h, 1.0), xp.maximum(box_w, 1.0)
    bin_h, bin_w = box_h / oh, box_w / ow

    # Bin starts, [R, oh * ow] (at most five dimensions anywhere, LiteRT's limit),
    # moved by the offsets.
    bins = xp.arange(oh * ow, dtype=index)
    start_y = (xp.reshape(y1 - shift, (-1, 1))
               + xp.reshape(xp.cast(bins // ow, geometry), (1, -1)) * xp.reshape(bin_h, (-1, 1)))
    start_x = (xp.reshape(x1 - shift, (-1, 1))
               + xp.reshape(xp.cast(bins % ow, geometry), (1, -1)) * xp.reshape(bin_w, (-1, 1)))
    if offsets is not None:
        moves = xp.reshape(xp.cast(offsets, geometry), (-1, oh * ow, 2))
        start_y = start_y + gamma * xp.reshape(box_h, (-1, 1)) * moves[..., 0]
        start_x = start_x + gamma * xp.reshape(box_w, (-1, 1)) * moves[..., 1]

    # Sample grids: [R, 1, grid] positions per axis, and which of them a RoI uses.
    if sampling_ratio > 0:
        grid_h = grid_w = sampling_ratio
        size_h, size_w = sampling_ratio, sampling_ratio
    else:
        grid_h = xp.maximum(xp.ceil(bin_h), 1.0)
        grid_w = xp.maximum(xp.ceil(bin_w), 1.0)
        size_h, size_w = xp.cast(xp.max(grid_h), index), xp.cast(xp.max(grid_w), index)
        grid_h, grid_w = xp.reshape(grid_h, (-1, 1, 1)), xp.reshape(grid_w, (-1, 1, 1))
    steps_y = xp.reshape(xp.cast(xp.arange(size_h), geometry), (1, 1, -1))
    steps_x = xp.reshape(xp.cast(xp.arange(size_w), geometry), (1, 1, -1))
    y = start_y[..., None] + (steps_y + 0.5) * xp.reshape(bin_h, (-1, 1, 1)) / grid_h
    x = start_x[..., None] + (steps_x + 0.5) * xp.reshape(bin_w, (-1, 1, 1)) / grid_w
    inside_y, top, bottom, weight_top, weight_bottom = _axis(xp, y, xp.size_as(h, geometry),
                                                             index)
    inside_x, left, right, weight_left, weight_right = _axis(xp, x, xp.size_as(w, geometry),
                                                             index)
    if sampling_ratio <= 0:
        inside_y = xp.logical_and(inside_y, steps_y < grid_h)
        inside_x = xp.logical_and(inside_x, steps_x < grid_w)

    # Rows of the features seen as [N * H * W, C], then a row of zeros that every
    # sample outside the map reads (so that not even a NaN pixel reaches a bin that
    # does not sample it); reads are [R, oh * ow, gy, gx, C].
    h, w = xp.size_as(h, index), xp.size_as(w, index)
    blank = xp.size_as(n, index) * h * w
    table = xp.concatenate([xp.reshape(features, (-1, channels)),
                            xp.zeros((1, channels), features.dtype)], 0)
    base = xp.reshape(image, (-1, 1, 1)) * h
    both = xp.logical_and(inside_y[..., :, None], inside_x[..., None, :])
    zero = xp.zeros_like(weight_top[..., :, None] * weight_left[..., None, :])
    total = None
    for row, weight_row in ((top, weight_top), (bottom, weight_bottom)):
        for col, weight_col in ((left, weight_left), (right, weight_right)):
            weight = xp.where(both, weight_row[..., :, None] * weight_col[..., None, :], zero)
            flat = ((base + row)[..., :, None]) * w + col[..., None, :]
            flat = xp.where(both, flat, xp.zeros_like(flat) + blank)
            read = xp.take(table, flat) * xp.cast(weight, features.dtype)[..., None]
            total = read if total is None else total + read
    count = xp.cast(grid_h * grid_w, features.dtype)
    if sampling_ratio <= 0:
        count = xp.reshape(count, (-1, 1, 1))
    output = xp.reshape(xp.sum(total, axis=(2, 3)) / count, (-1, oh, ow, channels))
    if mask is not None:
        output = output * mask
    return output
