"""Both ops on tensors of Keras' current backend, as their composites in `keras.ops`.

The layers call these where Keras does not run on TensorFlow (JAX, PyTorch): the same
composites as `keras_dcn.ops` runs under XLA (`_deform_conv_composite`,
`_deform_roi_pool_composite`), written in the `KERAS` array namespace, with the
arguments the layers have already checked. Half types are computed in float32, as the
kernels accumulate. Shapes are static on these backends, so SAME padding is resolved
here. RoIs are checked as the kernels check them wherever their values are known (eager
PyTorch or JAX); inside `jax.jit` they cannot be, and a batch index out of range reads
NaN (JAX fills such reads).
"""

import keras
import numpy as np

from keras_dcn.ops import _array_namespace
from keras_dcn.ops import _deform_conv_composite
from keras_dcn.ops import _deform_roi_pool_composite
from keras_dcn.ops import _padding
from keras_dcn.ops.deform_roi_pool import (
    ADAPTIVE_GRID_RULE, BATCH_INDEX_RULE, FINITE_RULE, MAX_SAMPLES_PER_BIN, ORDER_RULE)

_XP = _array_namespace.KERAS


def refuse_custom(implementation):
    """ValueError for `implementation="custom"`: the kernels are TensorFlow ops."""
    if implementation == "custom":
        raise ValueError(
            f"implementation='custom' needs Keras' TensorFlow backend (the compiled "
            f"kernels are TensorFlow ops), but Keras runs on the "
            f"{keras.backend.backend()!r} backend; use 'auto' or 'composite'")


def _compute_dtype(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    return dtype, ("float32" if dtype in ("float16", "bfloat16") else dtype)


def _require_shape(tensor, expected, name, layout):
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} ({layout}), "
                         f"got {tuple(tensor.shape)}")


def deform_conv2d(inputs, offsets, kernel, mask=None, bias=None, strides=(1, 1),
                  padding="valid", dilation_rate=(1, 1), groups=1, deformable_groups=1,
                  implementation="auto"):
    """`keras_dcn.ops.deform_conv2d` in channels_last on backend tensors.

    inputs `[N, H, W, C]`, offsets `[N, Ho, Wo, 2 * dg * kh * kw]`, kernel
    `[kh, kw, C // groups, filters]`, mask `[N, Ho, Wo, dg * kh * kw]` or None, bias
    `[filters]` or None, all of one float dtype; the other arguments as the layer keeps
    them (pairs of ints, a checked padding). Returns `[N, Ho, Wo, filters]`.
    """
    refuse_custom(implementation)
    dtype, compute = _compute_dtype(inputs.dtype)
    n, h, w, _ = inputs.shape
    kh, kw = kernel.shape[:2]
    ho, wo = _padding.output_size((h, w), (kh, kw), strides, dilation_rate, padding)
    taps = deformable_groups * kh * kw
    _require_shape(offsets, (n, ho, wo, 2 * taps), "offsets", "[N, Ho, Wo, 2*dg*kh*kw]")
    if mask is not None:
        _require_shape(mask, (n, ho, wo, taps), "mask", "[N, Ho, Wo, dg*kh*kw]")
    top, _, left, _ = _padding.resolve((h, w), (kh, kw), strides, dilation_rate, padding)
    cast = lambda t: None if t is None else _XP.cast(t, compute)  # noqa: E731
    output = _deform_conv_composite.deform_conv2d(
        _XP, cast(inputs), cast(offsets), cast(mask), cast(kernel), cast(bias), strides,
        dilation_rate, (top, left), groups, deformable_groups)
    return _XP.cast(output, dtype)


def _known_values(tensor):
    """`tensor` as a NumPy array, or None while `jax.jit` traces it."""
    if keras.backend.backend() == "jax":
        import jax  # only on this backend

        if isinstance(tensor, jax.core.Tracer):
            return None
    return keras.ops.convert_to_numpy(tensor)


def _check_rois(rois, batch, output_size, spatial_scale, sampling_ratio):
    """ValueError naming the rule a row of `rois` (a NumPy array) breaks."""
    index, corners = rois[:, 0], rois[:, 1:]
    with np.errstate(invalid="ignore"):
        if not np.all((index >= 0) & (index < batch)):
            raise ValueError(BATCH_INDEX_RULE)
        if not np.all(np.isfinite(corners)):
            raise ValueError(FINITE_RULE)
        if not np.all((rois[:, 3] >= rois[:, 1]) & (rois[:, 4] >= rois[:, 2])):
            raise ValueError(ORDER_RULE)
    if sampling_ratio <= 0 and len(rois):
        (oh, ow) = output_size
        grid_h = np.maximum(np.ceil((rois[:, 4] - rois[:, 2]) * spatial_scale / oh), 1)
        grid_w = np.maximum(np.ceil((rois[:, 3] - rois[:, 1]) * spatial_scale / ow), 1)
        if np.max(grid_h * grid_w) > MAX_SAMPLES_PER_BIN:
            raise ValueError(ADAPTIVE_GRID_RULE)


def deform_roi_pool(features, rois, offsets=None, mask=None, output_size=(7, 7),
                    spatial_scale=1.0, sampling_ratio=2, gamma=0.1, aligned=True,
                    implementation="auto"):
    """`keras_dcn.ops.deform_roi_pool` in channels_last on backend tensors.

    features `[N, H, W, C]`, rois `[R, 5]` (read in float32, float64 for float64
    features), offsets `[R, oh, ow, 2]` and mask `[R, oh, ow, 1]` or None; the other
    arguments as the layer keeps them. Returns `[R, oh, ow, C]`. An adaptive grid
    (`sampling_ratio <= 0`) needs the RoIs' values, so not inside `jax.jit`.
    """
    refuse_custom(implementation)
    dtype, compute = _compute_dtype(features.dtype)
    rois = _XP.cast(rois, "float64" if dtype == "float64" else "float32")
    if len(rois.shape) != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must have shape [R, 5] (batch_index, x1, y1, x2, y2), "
                         f"got {tuple(rois.shape)}")
    values = _known_values(rois)
    if values is None and sampling_ratio <= 0:
        raise ValueError(
            f"sampling_ratio must be > 0 inside jax.jit (as in Model.fit on JAX): an "
            f"adaptive grid has a size known only from the rois' values, got "
            f"{sampling_ratio}")
    oh, ow = output_size
    channels = features.shape[-1]
    if values is not None:
        _check_rois(values, features.shape[0], output_size, spatial_scale, sampling_ratio)
        if not len(values):
            return _XP.zeros((0, oh, ow, channels), dtype)
    for name, tensor, last in (("offsets", offsets, 2), ("mask", mask, 1)):
        if tensor is not None:
            _require_shape(tensor, (rois.shape[0], oh, ow, last), name,
                           f"[R, oh, ow, {last}]")
    cast = lambda t: None if t is None else _XP.cast(t, compute)  # noqa: E731
    output = _deform_roi_pool_composite.deform_roi_pool(
        _XP, cast(features), rois, cast(offsets), cast(mask), tuple(output_size),
        spatial_scale, sampling_ratio, gamma, aligned)
    return _XP.cast(output, dtype)
