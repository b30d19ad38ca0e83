"""Modulated deformable RoI pooling (DCNv2, Eq. 2) as a differentiable TensorFlow op."""

import numpy as np
import tensorflow as tf

from keras_dcn import _library
from keras_dcn.ops import _args
from keras_dcn.ops import _array_namespace
from keras_dcn.ops import _deform_roi_pool_composite
from keras_dcn.ops import _implementation

# The kernels' limit (kMaxSamplingRatio in
# tf_ops/cc/kernels/portable/deform_roi_pool.h).
_MAX_SAMPLING_RATIO = 4096
# The kernels' limit on an adaptive grid (kMaxSamplesPerBin, same header).
MAX_SAMPLES_PER_BIN = 2**24
# The most elements a tensor may have (int64 sizes).
_MAX_ELEMENTS = 2**63 - 1

# What the kernels require of the rois, as their errors say it.
BATCH_INDEX_RULE = ("rois[:, 0] (the batch index) must be a finite number in [0, N) "
                    "(the batch size of features)")
FINITE_RULE = "rois must have finite coordinates"
ORDER_RULE = "rois must have x1 <= x2 and y1 <= y2"
ADAPTIVE_GRID_RULE = (f"rois are too large for sampling_ratio <= 0: their bins would need "
                      f"more than {MAX_SAMPLES_PER_BIN} samples each; pass a positive "
                      f"sampling_ratio")


def _float32_attr(value, name, positive=False):
    """`value` checked as a finite (positive) number that stays so in float32."""
    value = _args.finite_float(value, name, positive)
    with np.errstate(over="ignore"):
        single = np.float32(value)
    if not np.isfinite(single) or (positive and not single > 0):
        kind = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {kind} in float32, got {value!r}")
    return value


def _check_static_shapes(features, rois, offsets, mask, output_size, data_format):
    """Checks what is statically known of the shapes; the kernel checks the rest."""
    first = data_format == "channels_first"
    _args.require_rank(features, 4, "features", "[N, C, H, W]" if first else "[N, H, W, C]")
    _args.require_rank(rois, 2, "rois", "[R, 5] (batch_index, x1, y1, x2, y2)")
    if rois.shape.rank == 2 and rois.shape[1] not in (None, 5):
        raise ValueError(
            f"rois must have shape [R, 5] (batch_index, x1, y1, x2, y2), got {rois.shape}")
    num_rois = rois.shape[0] if rois.shape.rank == 2 else None
    oh, ow = output_size
    for name, tensor, last in (("offsets", offsets, 2), ("mask", mask, 1)):
        if tensor is None:
            continue
        _args.require_rank(tensor, 4, name, f"[R, oh, ow, {last}]")
        if tensor.shape.rank is None:
            continue
        expected = tf.TensorShape([num_rois, oh, ow, last])
        if not expected.is_compatible_with(tensor.shape):
            raise ValueError(
                f"{name} must have shape {expected} ([R, output_size[0], output_size[1], "
                f"{last}] with R the number of rois, in both data formats), "
                f"got {tensor.shape}")
        if num_rois is None:
            num_rois = tensor.shape[0]


def deform_roi_pool(features, rois, offsets=None, mask=None, output_size=(7, 7),
                    spatial_scale=1.0, sampling_ratio=2, gamma=0.1, aligned=True,
                    data_format="channels_last", name=None, implementation="auto"):
    """(Modulated) deformable RoI pooling (DCNv2, Eq. 2).

    `y(k) = sum_j x(p_kj + dp_k) * dm_k / n_k` for bin `k` of a RoI: RoIAlign whose
    bins are moved by learned offsets and scaled by a learned modulation.

    Each RoI `(b, x1, y1, x2, y2)` becomes the box from `(x1, y1) * spatial_scale`
    to `(x2, y2) * spatial_scale` on the feature map, moved by -0.5 pixel when
    `aligned` (torchvision's `roi_align(aligned=True)`, mmcv's `DeformRoIPool`);
    without `aligned` it is not moved but its width and height are raised to at least
    one feature pixel (the original RoIAlign). The box of size `roi_h x roi_w` is cut
    into `oh x ow` bins of `roi_h / oh x roi_w / ow`. Bin `(ph, pw)` is moved by
    `(gamma * roi_h * dy, gamma * roi_w * dx)`, with `(dy, dx) = offsets[r, ph, pw]`,
    and read at the `grid_h x grid_w` points `((iy + 0.5) * roi_h / (oh * grid_h),
    (ix + 0.5) * roi_w / (ow * grid_w))` from its corner, where
    `grid_h = grid_w = sampling_ratio` if `sampling_ratio > 0`, otherwise
    `grid_h = ceil(roi_h / oh)`, `grid_w = ceil(roi_w / ow)` (at least 1, so a box of
    size zero reads its one point; torchvision returns 0 there). The bin's value is
    the mean of those reads times `mask[r, ph, pw, 0]`.

    Reads follow RoIAlign: a point with `y < -1`, `y > H`, `x < -1` or `x > W` (or
    a NaN coordinate) reads 0; otherwise a negative coordinate is raised to 0, and
    one at or past the last row / column reads that row / column.

    Gradients flow to `features`, `offsets` and `mask` (first order; eager, graph,
    `tf.function`); `rois` get none. The offset gradient is the derivative of the
    clamped read: 0 along an axis where the coordinate was clamped (below 0, at or
    past the last pixel) and for points that read 0; at integer coordinates it is
    the right-hand (floor-based) derivative.

    Args:
      features: `[N, H, W, C]` (channels_last) or `[N, C, H, W]` (channels_first);
        one of `FLOAT_DTYPES` (keras_dcn/ops/_args.py; half types accumulate in
        float32).
      rois: `[R, 5]`, rows `(batch_index, x1, y1, x2, y2)` in input-image pixels
        (torchvision / mmcv). Any float or integer dtype; converted to the dtype the
        kernels compute in: float64 for float64 features, float32 otherwise (so the
        half types read float32 boxes). `batch_index` must
        be finite and in `[0, N)` and is truncated to an integer; corners must be
        finite with `x1 <= x2` and `y1 <= y2` (a zero-size box is allowed).
      offsets: `[R, oh, ow, 2]`, `(dy, dx)` per bin in units of the RoI height /
        width (before `gamma`), the same layout in both data formats, dtype of
        `features`; None for no offsets (plain RoIAlign). mmcv's `DeformRoIPool`
        stores them as `[R, 2, oh, ow]` with `dx` first; its offsets `o` become
        these with `tf.reverse(tf.transpose(o, [0, 2, 3, 1]), [-1])`.
      mask: `[R, oh, ow, 1]` in both data formats, dtype of `features`, used as given
        (no sigmoid); None for DCNv1 (all ones).
      output_size: `(oh, ow)` or an int for a square output.
      spatial_scale: feature-map size / image size (1 / stride), finite and > 0.
      sampling_ratio: points per bin along each axis; `<= 0` for the adaptive rule
        above. At most 4096, and an adaptive grid may hold at most 2**24 points per
        bin (larger boxes raise `InvalidArgumentError`).
      gamma: scale of the offsets (0.1 in DCNv1 and the authors' code), finite. `spatial_scale` and
        `gamma` are float32 attributes of the op; float64 features compute with
        the values as written (0.1, not float32's nearest value to it).
      aligned: whether to move the boxes by -0.5 pixel (see above).
      data_format: "channels_last" or "channels_first" (of `features` and the
        result only).
      name: optional name scope.
      implementation: "custom" (the compiled kernels), "composite" (standard
        TensorFlow ops only: runs under XLA, in TF Serving without keras_dcn and in
        LiteRT; under XLA it needs `sampling_ratio > 0`, and an adaptive grid holds
        every RoI's samples at the size of the largest RoI's grid) or "auto" (the compiled
        kernels, except under `jit_compile=True` or where the library cannot load);
        see keras_dcn/ops/_implementation.py. Both give the same values and gradients.

    Returns:
      `[R, oh, ow, C]` (channels_last) or `[R, C, oh, ow]` (channels_first) in the
      dtype of `features`. `R = 0` gives an empty result (and empty gradients).

    Raises:
      ValueError or TypeError naming the argument when an argument or a static shape
      does not fit; tf.errors.InvalidArgumentError naming `rois` (or the shape that
      does not fit) for bad values or shapes known only at run time.
    """
    with tf.name_scope(name or "deform_roi_pool"):
        data_format = _args.data_format(data_format)
        _implementation.check(implementation)
        features = _args.float_tensor(features, "features")
        dtype = features.dtype
        rois = _args.real_tensor(rois, "rois",
                                 tf.float64 if dtype == tf.float64 else tf.float32)
        offsets = None if offsets is None else _args.float_tensor(offsets, "offsets", dtype)
        mask = None if mask is None else _args.float_tensor(mask, "mask", dtype)
        output_size = _args.positive_pair(output_size, "output_size")
        if output_size[0] * output_size[1] * 2 > _MAX_ELEMENTS:
            raise ValueError(
                f"output_size {output_size} is too large: the offsets of one RoI, "
                f"[oh, ow, 2], would have more than 2**63 - 1 elements")
        sampling_ratio = _args.integer(sampling_ratio, "sampling_ratio")
        if sampling_ratio > _MAX_SAMPLING_RATIO:
            raise ValueError(
                f"sampling_ratio must be at most {_MAX_SAMPLING_RATIO}, got {sampling_ratio}")
        if not isinstance(aligned, (bool, np.bool_)):
            raise ValueError(f"aligned must be a bool, got {aligned!r}")
        attrs = dict(
            output_size=list(output_size),
            spatial_scale=_float32_attr(spatial_scale, "spatial_scale", positive=True),
            sampling_ratio=sampling_ratio,
            gamma=_float32_attr(gamma, "gamma"),
            aligned=bool(aligned),
        )
        _check_static_shapes(features, rois, offsets, mask, output_size, data_format)

        composite = _implementation.resolve(implementation, "deform_roi_pool") == "composite"
        if composite and sampling_ratio <= 0 and _implementation.in_xla_compilation():
            raise ValueError(
                "sampling_ratio must be > 0 under XLA (jit_compile=True): an adaptive "
                f"grid has a size known only from the rois, got {sampling_ratio}")

        if data_format == "channels_first":
            features = _args.to_channels_last(features, "features")
        if composite:
            output = _composite(features, rois, offsets, mask, attrs)
        else:
            output = _custom(features, rois, offsets, mask, attrs)
        if data_format == "channels_first":
            output = _args.to_channels_first(output)
        return output


def _custom(features, rois, offsets, mask, attrs):
    """The compiled kernel on channels_last features."""
    # int64, so that a huge output_size fails as too many elements.
    num_rois = tf.shape(rois, out_type=tf.int64)[0]
    output_size = attrs["output_size"]
    if offsets is None:
        offsets = tf.zeros(tf.stack([num_rois, *(tf.constant(n, tf.int64)
                                                 for n in (*output_size, 2))]), features.dtype)
    if mask is None:
        mask = tf.ones(tf.stack([num_rois, *(tf.constant(n, tf.int64)
                                             for n in (*output_size, 1))]), features.dtype)
    return _library.load().dcn_deform_roi_pool(features, rois, offsets, mask, **attrs)


def _checked_rois(features, rois, attrs):
    """`rois` after the checks the kernels make of them (InvalidArgumentError naming
    `rois` otherwise): finite batch indices in [0, N), finite corners, x1 <= x2 and
    y1 <= y2, and with `sampling_ratio <= 0` at most `MAX_SAMPLES_PER_BIN` samples a
    bin. XLA cannot run such checks, so there the rois are taken as they are."""
    if _implementation.in_xla_compilation():
        return rois
    batch = tf.cast(tf.shape(features)[0], rois.dtype)
    index, corners = rois[:, 0], rois[:, 1:]
    checks = [
        tf.debugging.assert_equal(
            tf.reduce_all((index >= 0) & (index < batch)), True,
            message=BATCH_INDEX_RULE),
        tf.debugging.assert_equal(
            tf.reduce_all(tf.math.is_finite(corners)), True,
            message=FINITE_RULE),
        tf.debugging.assert_equal(
            tf.reduce_all((rois[:, 3] >= rois[:, 1]) & (rois[:, 4] >= rois[:, 2])), True,
            message=ORDER_RULE),
    ]
    if attrs["sampling_ratio"] <= 0:
        (oh, ow), scale = attrs["output_size"], attrs["spatial_scale"]
        grid_h = tf.maximum(tf.math.ceil((rois[:, 4] - rois[:, 2]) * scale / oh), 1)
        grid_w = tf.maximum(tf.math.ceil((rois[:, 3] - rois[:, 1]) * scale / ow), 1)
        checks.append(tf.debugging.assert_less_equal(
            grid_h * grid_w, tf.cast(MAX_SAMPLES_PER_BIN, rois.dtype),
            message=ADAPTIVE_GRID_RULE))
    with tf.control_dependencies(checks):
        return tf.identity(rois)


def _composite(features, rois, offsets, mask, attrs):
    """The composite of standard ops on channels_last features (half types computed
    in float32, as the kernels accumulate)."""
    dtype = features.dtype
    compute = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
    cast = lambda t: None if t is None else tf.cast(t, compute)  # noqa: E731
    output = _deform_roi_pool_composite.deform_roi_pool(
        _array_namespace.TENSORFLOW, cast(features), _checked_rois(features, rois, attrs),
        cast(offsets), cast(mask), tuple(attrs["output_size"]), attrs["spatial_scale"],
        attrs["sampling_ratio"], attrs["gamma"], attrs["aligned"])
    return tf.cast(output, dtype)


@tf.RegisterGradient("DcnDeformRoiPool")
def _deform_roi_pool_grad(op, output_grad):
    attrs = {
        key: op.get_attr(key)
        for key in ("output_size", "spatial_scale", "sampling_ratio", "gamma", "aligned")
    }
    # A GradientTape names the inputs it needs no gradient for (plain RoIAlign's zero
    # offsets and unit mask): the kernel then skips the offset and mask gradients.
    skipped = getattr(op, "skip_input_indices", None) or ()
    coordinates = not (2 in skipped and 3 in skipped)
    features_grad, offsets_grad, mask_grad = _library.load().dcn_deform_roi_pool_grad(
        op.inputs[0], op.inputs[1], op.inputs[2], op.inputs[3], output_grad,
        coordinate_gradients=coordinates, **attrs)
    if not coordinates:
        return features_grad, None, None, None
    return features_grad, None, offsets_grad, mask_grad
