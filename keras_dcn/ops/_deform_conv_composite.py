"""Modulated deformable convolution from standard array operations.

The composite implementation of `keras_dcn.ops.deform_conv2d`: the same sampling
points, the same bilinear reads with zeros outside the image and, through automatic
differentiation, the same gradients as the compiled kernels (shared/API.md, section
1), written against an array namespace (`keras_dcn.ops._array_namespace`) so that it
runs as plain TensorFlow ops (XLA, TF Serving, LiteRT) and under every Keras backend.

It gathers the four neighbours of every sampling point from the input, weighs them
and multiplies the resulting columns `[N, Ho, Wo, kh * kw, C]` with the kernel, so
its memory is about four times that of one column buffer.
"""

import numpy as np


def _taps(kernel_size, dilations):
    """Offsets `(dy, dx)` of the taps from the window's corner, `[kh * kw]` each, in the
    order of the offset channels."""
    kh, kw = kernel_size
    rows, cols = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    return rows.reshape(-1) * dilations[0], cols.reshape(-1) * dilations[1]


def deform_conv2d(xp, inputs, offsets, mask, kernel, bias, strides, dilations, pads,
                  groups, deformable_groups):
    """`deform_conv2d` in channels_last, computed with the functions of `xp`.

    Args:
      xp: an array namespace (`keras_dcn.ops._array_namespace`).
      inputs: `[N, H, W, C]`.
      offsets: `[N, Ho, Wo, 2 * dg * kh * kw]`, torchvision's channel order.
      mask: `[N, Ho, Wo, dg * kh * kw]` or None (all ones).
      kernel: `[kh, kw, C // groups, filters]`.
      bias: `[filters]` or None.
      strides, dilations: `(height, width)` pairs of ints.
      pads: `(top, left)`, the padding before the first row and column.
      groups, deformable_groups: ints.

    All tensors share one floating dtype, the one the result is computed in; the
    shapes are consistent (the caller checks them).

    Returns:
      `[N, Ho, Wo, filters]`.
    """
    n, h, w, channels = xp.dims(inputs)
    _, ho, wo, _ = xp.dims(offsets)
    kh, kw, _, filters = kernel.shape
    taps = kh * kw
    dg = deformable_groups
    dtype = inputs.dtype
    index = xp.index_dtype

    # Everything per sampling point is laid out [N, Ho * Wo, taps, dg] (at most five
    # dimensions anywhere, LiteRT's limit).
    offsets = xp.transpose(xp.reshape(offsets, (n, -1, dg, taps, 2)), (0, 1, 3, 2, 4))
    tap_y, tap_x = _taps((kh, kw), dilations)
    out_w = xp.size_as(wo, index)
    position = xp.arange(xp.size_as(ho, index) * out_w, dtype=index)
    rows = xp.cast(position // out_w, dtype) * strides[0] - pads[0]
    cols = xp.cast(position % out_w, dtype) * strides[1] - pads[1]
    y = (xp.reshape(rows, (1, -1, 1, 1))
         + xp.reshape(xp.cast(tap_y, dtype), (1, 1, taps, 1)) + offsets[..., 0])
    x = (xp.reshape(cols, (1, -1, 1, 1))
         + xp.reshape(xp.cast(tap_x, dtype), (1, 1, taps, 1)) + offsets[..., 1])
    # A point at or beyond -1 < y < H, -1 < x < W reads 0 and gets no gradient; its
    # coordinates are replaced by 0 before use, so that nothing downstream of them
    # (not even a NaN) reaches the gradient.
    h_float, w_float = xp.size_as(h, dtype), xp.size_as(w, dtype)
    inside = xp.logical_and(xp.logical_and(y > -1, y < h_float),
                            xp.logical_and(x > -1, x < w_float))
    y = xp.where(inside, y, xp.zeros_like(y))
    x = xp.where(inside, x, xp.zeros_like(x))
    y_floor, x_floor = xp.floor(y), xp.floor(x)
    ly, lx = y - y_floor, x - x_floor
    top, left = xp.cast(y_floor, index), xp.cast(x_floor, index)
    h, w = xp.size_as(h, index), xp.size_as(w, index)
    if mask is not None:
        mask = xp.transpose(xp.reshape(mask, (n, -1, dg, taps)), (0, 1, 3, 2))

    # Rows of the input seen as [N * H * W * dg, C // dg], then a row of zeros that
    # every neighbour outside the image reads (so that not even a NaN pixel reaches
    # an output that does not sample it).
    table = xp.reshape(inputs, (-1, channels // dg))
    blank = xp.size_as(n, index) * h * w * dg
    table = xp.concatenate([table, xp.zeros((1, channels // dg), dtype)], 0)
    image = xp.reshape(xp.arange(n, dtype=index), (-1, 1, 1, 1))
    group = xp.reshape(xp.arange(dg, dtype=index), (1, 1, 1, dg))
    columns = None
    for dy in (0, 1):
        row = top + dy
        weight_y = ly if dy else 1 - ly
        for dx in (0, 1):
            col = left + dx
            weight = weight_y * (lx if dx else 1 - lx)
            valid = xp.logical_and(
                inside, xp.logical_and(xp.logical_and(row >= 0, row < h),
                                       xp.logical_and(col >= 0, col < w)))
            weight = xp.where(valid, weight, xp.zeros_like(weight))
            if mask is not None:
                weight = weight * mask
            flat = ((image * h + row) * w + col) * dg + group
            flat = xp.where(valid, flat, xp.zeros_like(flat) + blank)
            read = xp.take(table, flat) * weight[..., None]
            columns = read if columns is None else columns + read

    # [N, Ho * Wo, taps, dg, C // dg] -> [N, Ho * Wo, taps, groups, C // groups].
    columns = xp.reshape(columns, (n, -1, taps, groups, channels // groups))
    weights = xp.reshape(kernel, (taps, channels // groups, groups, filters // groups))
    output = xp.reshape(xp.einsum("npkgc,kcgf->npgf", columns, weights),
                        (n, ho, wo, filters))
    if bias is not None:
        output = output + bias
    return output
