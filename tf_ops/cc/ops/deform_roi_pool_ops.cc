// Registration and shape functions of the modulated deformable RoI pooling ops.
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tf_ops/cc/kernels/deform_roi_pool_attrs.h"
#include "tf_ops/cc/kernels/float_types.h"

namespace keras_dcn {
namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// Replaces `*dim` by its merge with `other`, with an error that names `what`.
absl::Status MergeDim(InferenceContext* c, DimensionHandle other, const char* what,
                      DimensionHandle* dim) {
  if (c->ValueKnown(*dim) && c->ValueKnown(other) && c->Value(*dim) != c->Value(other)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be ", c->Value(*dim), ", got ", c->Value(other)));
  }
  return c->Merge(*dim, other, dim);
}

// Shapes of features, rois, offsets and mask, checked against each other and the
// attributes; the static output shape [num_rois, out_height, out_width, channels],
// as far as it can be known.
absl::Status InferOutputShape(InferenceContext* c, ShapeHandle* output) {
  DeformRoiPoolAttrs attrs;
  TF_RETURN_IF_ERROR(attrs.Read(c));
  ShapeHandle features, rois, offsets, mask;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &features));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &rois));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &offsets));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 4, &mask));

  DimensionHandle columns = c->MakeDim(5);
  TF_RETURN_IF_ERROR(MergeDim(c, c->Dim(rois, 1),
                              "rois dimension 1 "
                              "(batch_index, x1, y1, x2, y2)",
                              &columns));

  DimensionHandle num_rois = c->Dim(rois, 0);
  TF_RETURN_IF_ERROR(
      MergeDim(c, c->Dim(offsets, 0), "offsets dimension 0 (num_rois)", &num_rois));
  TF_RETURN_IF_ERROR(
      MergeDim(c, c->Dim(mask, 0), "mask dimension 0 (num_rois)", &num_rois));
  DimensionHandle out_height = c->MakeDim(attrs.output_size[0]);
  DimensionHandle out_width = c->MakeDim(attrs.output_size[1]);
  TF_RETURN_IF_ERROR(MergeDim(c, c->Dim(offsets, 1),
                              "offsets dimension 1 (output_size[0])", &out_height));
  TF_RETURN_IF_ERROR(
      MergeDim(c, c->Dim(mask, 1), "mask dimension 1 (output_size[0])", &out_height));
  TF_RETURN_IF_ERROR(MergeDim(c, c->Dim(offsets, 2),
                              "offsets dimension 2 (output_size[1])", &out_width));
  TF_RETURN_IF_ERROR(
      MergeDim(c, c->Dim(mask, 2), "mask dimension 2 (output_size[1])", &out_width));
  DimensionHandle pair = c->MakeDim(2);
  TF_RETURN_IF_ERROR(
      MergeDim(c, c->Dim(offsets, 3), "offsets dimension 3 (dy, dx)", &pair));
  DimensionHandle one = c->MakeDim(1);
  TF_RETURN_IF_ERROR(MergeDim(c, c->Dim(mask, 3), "mask dimension 3", &one));

  *output = c->MakeShape({num_rois, out_height, out_width, c->Dim(features, 3)});
  return absl::OkStatus();
}

absl::Status ForwardShape(InferenceContext* c) {
  ShapeHandle output;
  TF_RETURN_IF_ERROR(InferOutputShape(c, &output));
  c->set_output(0, output);
  return absl::OkStatus();
}

absl::Status BackwardShape(InferenceContext* c) {
  ShapeHandle output, output_grad;
  TF_RETURN_IF_ERROR(InferOutputShape(c, &output));
  TF_RETURN_IF_ERROR(c->Merge(output, c->input(4), &output_grad));
  ShapeHandle features = c->input(0);
  TF_RETURN_IF_ERROR(c->ReplaceDim(features, 3, c->Dim(output_grad, 3), &features));
  ShapeHandle offsets, mask;
  TF_RETURN_IF_ERROR(
      c->Merge(c->input(2),
               c->MakeShape({c->Dim(output_grad, 0), c->Dim(output_grad, 1),
                             c->Dim(output_grad, 2), c->MakeDim(2)}),
               &offsets));
  TF_RETURN_IF_ERROR(
      c->Merge(c->input(3),
               c->MakeShape({c->Dim(output_grad, 0), c->Dim(output_grad, 1),
                             c->Dim(output_grad, 2), c->MakeDim(1)}),
               &mask));
  bool coordinate_gradients = true;
  TF_RETURN_IF_ERROR(c->GetAttr("coordinate_gradients", &coordinate_gradients));
  c->set_output(0, features);
  c->set_output(1, coordinate_gradients ? offsets : c->Vector(0));
  c->set_output(2, coordinate_gradients ? mask : c->Vector(0));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("DcnDeformRoiPool")
    .Input("features: T")
    .Input("rois: Troi")
    .Input("offsets: T")
    .Input("mask: T")
    .Output("output: T")
    .Attr(FloatTypeAttr())
    .Attr("Troi: {float, double} = DT_FLOAT")
    .Attr("output_size: list(int) = [7, 7]")
    .Attr("spatial_scale: float = 1.0")
    .Attr("sampling_ratio: int = 2")
    .Attr("gamma: float = 0.1")
    .Attr("aligned: bool = true")
    .SetShapeFn(ForwardShape)
    .Doc(R"doc(
Modulated deformable RoI pooling (DCNv2), channels last.

output[r, ph, pw, c] = mask[r, ph, pw, 0] / (grid_h * grid_w) *
  sum over iy < grid_h, ix < grid_w of roi_align_read(features[b, :, :, c], y, x)
with b = rois[r, 0] and, for the RoI box (y0, x0, roi_h, roi_w) on the feature map
(corners times spatial_scale, minus 0.5 when aligned),
  y = y0 + ph * roi_h / oh + gamma * roi_h * offsets[r, ph, pw, 0]
         + (iy + 0.5) * roi_h / (oh * grid_h),
  x = x0 + pw * roi_w / ow + gamma * roi_w * offsets[r, ph, pw, 1]
         + (ix + 0.5) * roi_w / (ow * grid_w).
grid_h = grid_w = sampling_ratio when it is positive, else ceil(roi_h / oh) and
ceil(roi_w / ow) (at least 1). Reads follow RoIAlign: zero beyond [-1, height] x
[-1, width], clamped into the map inside it.

features: [batch, height, width, channels].
rois: [num_rois, 5], (batch_index, x1, y1, x2, y2) in image pixels, float32 or
  float64. The kernels read them in float32, or in float64 for float64 features
  (converting when given in the other type); float64 features also compute with
  spatial_scale and gamma as written in decimal (0.1, not float32's nearest value).
offsets: [num_rois, oh, ow, 2], (dy, dx) normalised by the RoI height / width.
mask: [num_rois, oh, ow, 1].
output: [num_rois, oh, ow, channels].
)doc");

REGISTER_OP("DcnDeformRoiPoolGrad")
    .Input("features: T")
    .Input("rois: Troi")
    .Input("offsets: T")
    .Input("mask: T")
    .Input("output_grad: T")
    .Output("features_grad: T")
    .Output("offsets_grad: T")
    .Output("mask_grad: T")
    .Attr(FloatTypeAttr())
    .Attr("Troi: {float, double} = DT_FLOAT")
    .Attr("output_size: list(int) = [7, 7]")
    .Attr("spatial_scale: float = 1.0")
    .Attr("sampling_ratio: int = 2")
    .Attr("gamma: float = 0.1")
    .Attr("aligned: bool = true")
    .Attr("coordinate_gradients: bool = true")
    .SetShapeFn(BackwardShape)
    .Doc(R"doc(
Gradients of DcnDeformRoiPool with respect to features, offsets and mask, given the
gradient with respect to its output (rois get none). The offset gradient is the
derivative of the clamped RoIAlign read: 0 for a coordinate that RoIAlign clamps
(below 0, or at or past the last pixel) and for a sample that reads 0.

coordinate_gradients: false skips the offset and mask gradients (for offsets and a
  mask that need none, as plain RoIAlign's zeros and ones); offsets_grad and
  mask_grad are then empty vectors [0].
)doc");

}  // namespace keras_dcn
