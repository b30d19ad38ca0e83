// Registration and shape functions of the modulated deformable convolution ops.
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tf_ops/cc/kernels/deform_conv_attrs.h"
#include "tf_ops/cc/kernels/float_types.h"

namespace keras_dcn {
namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// Fails when a known dimension `dim` of `what` differs from `expected` (if known).
absl::Status ExpectDim(InferenceContext* c, DimensionHandle dim, int64_t expected,
                       const char* what) {
  if (c->ValueKnown(dim) && c->Value(dim) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be ", expected, ", got ", c->Value(dim)));
  }
  return absl::OkStatus();
}

// Shapes of input, offsets, mask and kernel, checked against each other; the static
// output shape [batch, out_height, out_width, filters], as far as it can be known.
absl::Status InferOutputShape(InferenceContext* c, ShapeHandle* output) {
  DeformConvAttrs attrs;
  TF_RETURN_IF_ERROR(attrs.Read(c));
  ShapeHandle input, offsets, mask, kernel;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &offsets));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &mask));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 4, &kernel));

  DimensionHandle batch = c->Dim(input, 0);
  TF_RETURN_IF_ERROR(c->Merge(batch, c->Dim(offsets, 0), &batch));
  TF_RETURN_IF_ERROR(c->Merge(batch, c->Dim(mask, 0), &batch));

  const DimensionHandle channels = c->Dim(input, 3);
  const DimensionHandle filters = c->Dim(kernel, 3);
  if (c->ValueKnown(channels)) {
    const int64_t in_channels = c->Value(channels);
    if (in_channels % attrs.groups != 0) {
      return absl::InvalidArgumentError(absl::StrCat("input channels (", in_channels,
                                                     ") must be divisible by groups (",
                                                     attrs.groups, ")"));
    }
    if (in_channels % attrs.deformable_groups != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input channels (", in_channels, ") must be divisible by deformable_groups (",
          attrs.deformable_groups, ")"));
    }
    TF_RETURN_IF_ERROR(ExpectDim(c, c->Dim(kernel, 2), in_channels / attrs.groups,
                                 "kernel dimension 2 (input channels / groups)"));
  }
  if (c->ValueKnown(filters) && c->Value(filters) % attrs.groups != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("filters (kernel dimension 3, ", c->Value(filters),
                     ") must be divisible by groups (", attrs.groups, ")"));
  }

  DimensionHandle out_dims[2];
  for (int axis = 0; axis < 2; ++axis) {
    const DimensionHandle in = c->Dim(input, 1 + axis);
    const DimensionHandle k = c->Dim(kernel, axis);
    out_dims[axis] = c->UnknownDim();
    if (c->ValueKnown(k) && (c->Value(k) < 1 || c->Value(k) > kMaxConvSize)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "kernel dimension ", axis, " must be in [1, 2^30], got ", c->Value(k)));
    }
    if (c->ValueKnown(in) && c->ValueKnown(k)) {
      int64_t out = 0, pad = 0;
      const bool explicit_pad = attrs.padding == Padding::kExplicit;
      if (!ConvOutputSize(
              c->Value(in), c->Value(k), attrs.strides[axis], attrs.dilations[axis],
              attrs.padding, explicit_pad ? attrs.explicit_paddings[2 * axis] : 0,
              explicit_pad ? attrs.explicit_paddings[2 * axis + 1] : 0, &out, &pad)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the dilated kernel (", (c->Value(k) - 1) * attrs.dilations[axis] + 1,
            ") is larger than the padded input along ", axis == 0 ? "height" : "width"));
      }
      out_dims[axis] = c->MakeDim(out);
    }
    TF_RETURN_IF_ERROR(
        c->Merge(out_dims[axis], c->Dim(offsets, 1 + axis), &out_dims[axis]));
    TF_RETURN_IF_ERROR(c->Merge(out_dims[axis], c->Dim(mask, 1 + axis), &out_dims[axis]));
  }

  if (c->ValueKnown(c->Dim(kernel, 0)) && c->ValueKnown(c->Dim(kernel, 1))) {
    const int64_t kh = c->Value(c->Dim(kernel, 0));
    const int64_t kw = c->Value(c->Dim(kernel, 1));
    if (2.0 * attrs.deformable_groups * kh * kw > 0x1p62) {
      return absl::InvalidArgumentError(
          "2 * deformable_groups * kh * kw must be smaller than 2^62");
    }
    const int64_t taps = attrs.deformable_groups * kh * kw;
    TF_RETURN_IF_ERROR(ExpectDim(c, c->Dim(offsets, 3), 2 * taps,
                                 "offsets channels (2 * deformable_groups * kh * kw)"));
    TF_RETURN_IF_ERROR(ExpectDim(c, c->Dim(mask, 3), taps,
                                 "mask channels (deformable_groups * kh * kw)"));
  }
  *output = c->MakeShape({batch, out_dims[0], out_dims[1], filters});
  return absl::OkStatus();
}

absl::Status ForwardShape(InferenceContext* c) {
  ShapeHandle output, bias;
  TF_RETURN_IF_ERROR(InferOutputShape(c, &output));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &bias));
  DimensionHandle filters = c->Dim(output, 3);
  TF_RETURN_IF_ERROR(c->Merge(filters, c->Dim(bias, 0), &filters));
  TF_RETURN_IF_ERROR(c->ReplaceDim(output, 3, filters, &output));
  c->set_output(0, output);
  return absl::OkStatus();
}

absl::Status BackwardShape(InferenceContext* c) {
  ShapeHandle output, output_grad;
  TF_RETURN_IF_ERROR(InferOutputShape(c, &output));
  TF_RETURN_IF_ERROR(c->Merge(output, c->input(4), &output_grad));
  bool input_gradients = true, kernel_gradients = true;
  TF_RETURN_IF_ERROR(c->GetAttr("input_gradients", &input_gradients));
  TF_RETURN_IF_ERROR(c->GetAttr("kernel_gradients", &kernel_gradients));
  for (int i = 0; i < 4; ++i) {
    c->set_output(i, (i < 3 ? input_gradients : kernel_gradients) ? c->input(i)
                                                                   : c->Vector(0));
  }
  c->set_output(4, kernel_gradients ? c->Vector(c->Dim(output_grad, 3)) : c->Vector(0));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("DcnDeformConv2D")
    .Input("input: T")
    .Input("offsets: T")
    .Input("mask: T")
    .Input("kernel: T")
    .Input("bias: T")
    .Output("output: T")
    .Attr(FloatTypeAttr())
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("padding: {'VALID', 'SAME', 'EXPLICIT'} = 'VALID'")
    .Attr("explicit_paddings: list(int) = []")
    .Attr("groups: int = 1")
    .Attr("deformable_groups: int = 1")
    .SetShapeFn(ForwardShape)
    .Doc(R"doc(
Modulated deformable 2-D convolution (DCNv2), channels last.

output[n, ho, wo, f] = bias[f] + sum over taps (i, j) and input channels c of
  kernel[i, j, c, f] * mask[n, ho, wo, tap] * bilinear(input[n, :, :, c], y, x)
with y = ho * stride_h - pad_top + i * dilation_h + offsets[n, ho, wo, 2 * tap],
     x = wo * stride_w - pad_left + j * dilation_w + offsets[n, ho, wo, 2 * tap + 1],
tap = (g * kh + i) * kw + j for the deformable group g of channel c.

input: [batch, height, width, in_channels].
offsets: [batch, out_height, out_width, 2 * deformable_groups * kh * kw], (dy, dx) pairs.
mask: [batch, out_height, out_width, deformable_groups * kh * kw].
kernel: [kh, kw, in_channels / groups, filters].
bias: [filters].
output: [batch, out_height, out_width, filters].
)doc");

REGISTER_OP("DcnDeformConv2DGrad")
    .Input("input: T")
    .Input("offsets: T")
    .Input("mask: T")
    .Input("kernel: T")
    .Input("output_grad: T")
    .Output("input_grad: T")
    .Output("offsets_grad: T")
    .Output("mask_grad: T")
    .Output("kernel_grad: T")
    .Output("bias_grad: T")
    .Attr(FloatTypeAttr())
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("padding: {'VALID', 'SAME', 'EXPLICIT'} = 'VALID'")
    .Attr("explicit_paddings: list(int) = []")
    .Attr("groups: int = 1")
    .Attr("deformable_groups: int = 1")
    .Attr("input_gradients: bool = true")
    .Attr("kernel_gradients: bool = true")
    .SetShapeFn(BackwardShape)
    .Doc(R"doc(
Gradients of DcnDeformConv2D with respect to input, offsets, mask, kernel and bias,
given the gradient with respect to its output. Sampling points at or beyond the open
range (-1, height) x (-1, width) get no offset or mask gradient.

input_gradients: false skips the input, offsets and mask gradients (input_grad,
  offsets_grad and mask_grad are then empty vectors [0]).
kernel_gradients: false skips the kernel and bias gradients (kernel_grad and
  bias_grad are then empty vectors [0]). The two halves share little work: run as
  two ops, the kernel gradient leaves the path that carries the gradient back to
  the layers below, as the two backward ops of a regular convolution do.
)doc");

}  // namespace keras_dcn
