// Attributes of the DeformRoiPool ops, read and checked the same way by the shape
// function and by the kernels.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_DEFORM_ROI_POOL_ATTRS_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_DEFORM_ROI_POOL_ATTRS_H_

#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tf_ops/cc/kernels/portable/deform_roi_pool.h"

namespace keras_dcn {

// The shortest decimal that rounds to `value` in float32, as a double: a float32
// attribute written as 0.1 gives 0.1 rather than 0.100000001490116. TensorFlow has
// no float64 attributes; this is how float64 features compute with the value the
// caller wrote, while float(DecimalValue(v)) == v keeps the other types unchanged.
inline double DecimalValue(float value) {
  char text[32];
  const char* end = std::to_chars(text, text + sizeof(text), value).ptr;
  double decimal = value;
  std::from_chars(text, end, decimal);
  return decimal;
}

struct DeformRoiPoolAttrs {
  std::vector<int64_t> output_size;  // [out_height, out_width]
  float spatial_scale = 1.0f;
  int64_t sampling_ratio = 2;
  float gamma = 0.1f;
  bool aligned = true;

  // Reads and validates the attributes from an OpKernelConstruction or an
  // InferenceContext (both offer GetAttr).
  template <typename Context>
  absl::Status Read(Context* context) {
    TF_RETURN_IF_ERROR(context->GetAttr("output_size", &output_size));
    TF_RETURN_IF_ERROR(context->GetAttr("spatial_scale", &spatial_scale));
    TF_RETURN_IF_ERROR(context->GetAttr("sampling_ratio", &sampling_ratio));
    TF_RETURN_IF_ERROR(context->GetAttr("gamma", &gamma));
    TF_RETURN_IF_ERROR(context->GetAttr("aligned", &aligned));
    return Check();
  }

 private:
  absl::Status Check() const {
    if (output_size.size() != 2 || output_size[0] < 1 || output_size[1] < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output_size must be two positive integers [out_height, out_width], got [",
          absl::StrJoin(output_size, ", "), "]"));
    }
    if (!(spatial_scale > 0.0f) || !std::isfinite(spatial_scale)) {
      return absl::InvalidArgumentError(
          absl::StrCat("spatial_scale must be a finite number > 0, got ", spatial_scale));
    }
    if (sampling_ratio > kMaxSamplingRatio) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling_ratio must be at most ", kMaxSamplingRatio, " (",
                       kMaxSamplesPerBin, " samples per bin), got ", sampling_ratio));
    }
    if (!std::isfinite(gamma)) {
      return absl::InvalidArgumentError(
          absl::StrCat("gamma must be a finite number, got ", gamma));
    }
    return absl::OkStatus();
  }
};

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_DEFORM_ROI_POOL_ATTRS_H_
