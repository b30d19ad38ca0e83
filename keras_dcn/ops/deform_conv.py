"""Modulated deformable convolution (DCNv2) as a differentiable TensorFlow op."""

import tensorflow as tf

from keras_dcn import _library
from keras_dcn.ops import _args
from keras_dcn.ops import _array_namespace
from keras_dcn.ops import _deform_conv_composite
from keras_dcn.ops import _implementation
from keras_dcn.ops import _padding


def _check_static_shapes(inputs, offsets, mask, kernel, bias, attrs, padding, data_format):
    """Checks what is statically known of the shapes; the kernel checks the rest."""
    first = data_format == "channels_first"
    image = "[N, C, H, W]" if first else "[N, H, W, C]"
    _args.require_rank(inputs, 4, "inputs", image)
    _args.require_rank(kernel, 4, "kernel", "[kh, kw, C // groups, filters]")
    _args.require_rank(offsets, 4, "offsets", "[N, 2*dg*kh*kw, Ho, Wo]" if first else "[N, Ho, Wo, 2*dg*kh*kw]")
    if mask is not None:
        _args.require_rank(mask, 4, "mask", "[N, dg*kh*kw, Ho, Wo]" if first else "[N, Ho, Wo, dg*kh*kw]")
    if bias is not None and bias.shape.rank not in (None, 1):
        raise ValueError(f"bias must be a 1-D tensor [filters], got shape {bias.shape}")
    if inputs.shape.rank is None or kernel.shape.rank is None:
        return
    n, c, h, w = (inputs.shape[0], inputs.shape[1], inputs.shape[2], inputs.shape[3]) if first else (
        inputs.shape[0], inputs.shape[3], inputs.shape[1], inputs.shape[2])
    kh, kw, kc, filters = kernel.shape
    groups, dg = attrs["groups"], attrs["deformable_groups"]
    if c is not None:
        if c % groups:
            raise ValueError(f"inputs channels ({c}) must be divisible by groups ({groups})")
        if c % dg:
            raise ValueError(f"inputs channels ({c}) must be divisible by deformable_groups ({dg})")
        if kc is not None and kc != c // groups:
            raise ValueError(
                f"kernel must have shape [kh, kw, {c // groups} (channels // groups), filters], "
                f"got {kernel.shape}"
            )
    if filters is not None and filters % groups:
        raise ValueError(f"kernel filters ({filters}) must be divisible by groups ({groups})")
    if bias is not None and bias.shape.rank == 1 and None not in (bias.shape[0], filters) \
            and bias.shape[0] != filters:
        raise ValueError(f"bias must have shape [{filters}] (filters), got {bias.shape}")

    ho, wo = _padding.output_size((h, w), (kh, kw), attrs["strides"], attrs["dilations"], padding)
    if attrs["padding"] != "SAME" and 0 in (ho, wo):
        raise ValueError(
            f"the dilated kernel is larger than the padded input: kernel ({kh}, {kw}), "
            f"dilation_rate {tuple(attrs['dilations'])}, inputs ({h}, {w}), padding {padding!r}"
        )
    taps = None if None in (kh, kw) else dg * kh * kw
    for name, tensor, per_tap in (("offsets", offsets, 2), ("mask", mask, 1)):
        if tensor is None or tensor.shape.rank is None:
            continue
        expected = [n, per_tap * taps if taps else None, ho, wo] if first else \
                   [n, ho, wo, per_tap * taps if taps else None]
        if not tf.TensorShape(expected).is_compatible_with(tensor.shape):
            layout = ("[N, {}dg*kh*kw, Ho, Wo]" if first else "[N, Ho, Wo, {}dg*kh*kw]").format(
                "2*" if per_tap == 2 else "")
            raise ValueError(
                f"{name} must have shape {tf.TensorShape(expected)} ({layout}), got {tensor.shape}"
            )


def deform_conv2d(inputs, offsets, kernel, mask=None, bias=None, strides=(1, 1),
                  padding="valid", dilation_rate=(1, 1), groups=1,
                  deformable_groups=1, data_format="channels_last", name=None,
                  implementation="auto"):
    """Modulated deformable 2-D convolution (DCNv2; DCNv1 when `mask` is None).

    `y(p) = bias + sum_k w_k * x(p + p_k + dp_k) * m_k`, with `x` read by bilinear
    interpolation (zeros outside the image).

    Args:
      inputs: `[N, H, W, C]` (channels_last) or `[N, C, H, W]` (channels_first);
        one of `FLOAT_DTYPES` (keras_dcn/ops/_args.py; half types accumulate in
        float32).
      offsets: `[N, Ho, Wo, 2 * dg * kh * kw]` or `[N, 2 * dg * kh * kw, Ho, Wo]`.
        Channel `((g * kh + i) * kw + j) * 2` is the vertical offset `dy` of tap
        `(i, j)` in deformable group `g`, the next channel the horizontal `dx`
        (torchvision's order).
      kernel: `[kh, kw, C // groups, filters]`, the `keras.layers.Conv2D` layout in
        both data formats.
      mask: `[N, Ho, Wo, dg * kh * kw]` or `[N, dg * kh * kw, Ho, Wo]`, channel
        `(g * kh + i) * kw + j`, used as given (no sigmoid); None for DCNv1.
      bias: `[filters]` or None.
      strides: int or pair.
      padding: "valid", "same" (TensorFlow's rule: the odd pixel goes to the
        bottom / right), an int, a pair `(ph, pw)` or `((top, bottom), (left, right))`.
      dilation_rate: int or pair.
      groups: conv groups; C and filters must divide by it.
      deformable_groups: input channel `c` uses the offsets and mask of group
        `c // (C // deformable_groups)`.
      data_format: "channels_last" or "channels_first".
      name: optional name scope.
      implementation: "custom" (the compiled kernels), "composite" (standard
        TensorFlow ops only: runs under XLA, in TF Serving without keras_dcn and in
        LiteRT; needs a static kernel shape) or "auto" (the compiled kernels, except
        under `jit_compile=True` or where the library cannot load); see
        keras_dcn/ops/_implementation.py. Both give the same values and gradients.

    Returns:
      `[N, Ho, Wo, filters]` (or `[N, filters, Ho, Wo]`) in the dtype of `inputs`.
      Tap `(i, j)` of output `(ho, wo)` samples
      `y = ho * stride_h - pad_top + i * dilation_h + dy` and
      `x = wo * stride_w - pad_left + j * dilation_w + dx`; a point with `y <= -1`,
      `y >= H`, `x <= -1` or `x >= W` reads 0 and gets no offset or mask gradient.

    Raises:
      ValueError, TypeError or tf.errors.InvalidArgumentError naming the argument
      and the expected shape when an argument does not fit.
    """
    with tf.name_scope(name or "deform_conv2d"):
        data_format = _args.data_format(data_format)
        _implementation.check(implementation)
        inputs = _args.float_tensor(inputs, "inputs")
        dtype = inputs.dtype
        offsets = _args.float_tensor(offsets, "offsets", dtype)
        kernel = _args.float_tensor(kernel, "kernel", dtype)
        mask = None if mask is None else _args.float_tensor(mask, "mask", dtype)
        bias = None if bias is None else _args.float_tensor(bias, "bias", dtype)
        mode, explicit = _padding.parse(padding)
        attrs = dict(
            strides=list(_args.positive_pair(strides, "strides")),
            dilations=list(_args.positive_pair(dilation_rate, "dilation_rate")),
            padding=mode,
            explicit_paddings=explicit,
            groups=_args.positive_int(groups, "groups"),
            deformable_groups=_args.positive_int(deformable_groups, "deformable_groups"),
        )
        _check_static_shapes(inputs, offsets, mask, kernel, bias, attrs, padding, data_format)
        composite = _implementation.resolve(implementation, "deform_conv2d") == "composite"

        if data_format == "channels_first":
            inputs = _args.to_channels_last(inputs, "inputs")
            offsets = _args.to_channels_last(offsets, "offsets")
            mask = None if mask is None else _args.to_channels_last(mask, "mask")
        if composite:
            output = _composite(inputs, offsets, mask, kernel, bias, attrs, padding)
        else:
            output = _custom(inputs, offsets, mask, kernel, bias, attrs)
        if data_format == "channels_first":
            output = _args.to_channels_first(output)
        return output


def _custom(inputs, offsets, mask, kernel, bias, attrs):
    """The compiled kernel on channels_last tensors."""
    if mask is None:
        mask = tf.ones_like(offsets[..., ::2])
    if bias is None:
        bias = tf.zeros(tf.shape(kernel)[3:], dtype=inputs.dtype)
    return _library.load().dcn_deform_conv2d(inputs, offsets, mask, kernel, bias, **attrs)


def _leading_pads(inputs, kernel_size, attrs, padding):
    """`(top, left)` padding of channels_last `inputs`: ints, or for SAME on a size
    known only at run time, scalar tensors (TensorFlow's rule, as `_padding.resolve`)."""
    size = tuple(inputs.shape[1:3])
    if attrs["padding"] != "SAME" or None not in size:
        top, _, left, _ = _padding.resolve(size, kernel_size, attrs["strides"],
                                           attrs["dilations"], padding)
        return top, left
    pads = []
    for axis in range(2):
        length = tf.shape(inputs)[1 + axis]
        stride, dilation = attrs["strides"][axis], attrs["dilations"][axis]
        outputs = (length + stride - 1) // stride
        total = tf.maximum((outputs - 1) * stride + (kernel_size[axis] - 1) * dilation + 1
                           - length, 0)
        pads.append(total // 2)
    return tuple(pads)


# The most bytes of sampled columns the composite makes at once: larger outputs are
# computed in bands of output rows, each recomputed for the gradient, so that memory
# stays bounded whatever the image size.
_COMPOSITE_COLUMN_BYTES = 32 * 2**20


def _composite(inputs, offsets, mask, kernel, bias, attrs, padding):
    """The composite of standard ops on channels_last tensors (half types computed
    in float32, as the kernels accumulate), in bands of output rows when the sizes
    are static and the columns would exceed `_COMPOSITE_COLUMN_BYTES`."""
    kernel_size = kernel.shape[:2]
    if not kernel.shape.is_fully_defined():
        raise ValueError(
            f"kernel must have a static shape for implementation='composite', got "
            f"{kernel.shape}")
    dtype = inputs.dtype
    compute = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
    top, left = _leading_pads(inputs, tuple(kernel_size), attrs, padding)
    cast = lambda t: None if t is None else tf.cast(t, compute)  # noqa: E731
    inputs, offsets, mask, kernel = (cast(t) for t in (inputs, offsets, mask, kernel))

    def band(first_row, inputs, kernel, offsets, mask=None):
        """The output rows from `first_row` on that `offsets` (and `mask`) cover."""
        pads = tuple(p if isinstance(p, int) else tf.cast(p, compute)
                     for p in (top - first_row * attrs["strides"][0], left))
        return _deform_conv_composite.deform_conv2d(
            _array_namespace.TENSORFLOW, inputs, offsets, mask, kernel, None,
            attrs["strides"], attrs["dilations"], pads, attrs["groups"],
            attrs["deformable_groups"])

    n, ho, wo = offsets.shape[:3]
    row_bytes = None if None in (n, wo, inputs.shape[3]) else (
        n * wo * kernel_size[0] * kernel_size[1] * inputs.shape[3] * compute.size)
    rows = ho if row_bytes is None or ho is None else \
        max(1, _COMPOSITE_COLUMN_BYTES // row_bytes)
    if ho is None or rows >= ho:
        output = band(0, inputs, kernel, offsets, mask)
    else:
        bands = []
        for first in range(0, ho, rows):
            rows_of = lambda t, first=first: t[:, first:first + rows]  # noqa: E731
            sliced = [rows_of(offsets)] + ([] if mask is None else [rows_of(mask)])
            compute_band = tf.recompute_grad(
                lambda *tensors, first=first: band(first, *tensors))
            bands.append(compute_band(inputs, kernel, *sliced))
        output = tf.concat(bands, axis=1)
    if bias is not None:
        output = output + cast(bias)
    return tf.cast(output, dtype)


@tf.RegisterGradient("DcnDeformConv2D")
def _deform_conv2d_grad(op, output_grad):
    attrs = {
        key: op.get_attr(key)
        for key in ("strides", "dilations", "padding", "explicit_paddings", "groups",
                    "deformable_groups")
    }
    grad_op = _library.load().dcn_deform_conv2d_grad
    args = (*op.inputs[:4], output_grad)
    # A GradientTape names the inputs it needs no gradient for (a frozen kernel and
    # bias, or inputs that are constants): their half of the gradient is skipped.
    # Both halves run as two ops, as a regular convolution's backward does: the
    # kernel gradient then stays off the path that carries the gradient down to the
    # layers below, and can run beside it.
    skipped = set(getattr(op, "skip_input_indices", None) or ())
    input_half = not {0, 1, 2} <= skipped
    kernel_half = not {3, 4} <= skipped
    grads = [None] * 5
    if input_half:
        grads[:3] = grad_op(*args, input_gradients=True, kernel_gradients=False,
                            **attrs)[:3]
    if kernel_half:
        grads[3:] = grad_op(*args, input_gradients=False, kernel_gradients=True,
                            **attrs)[3:]
    return grads
