// Attributes of the DeformConv2D ops, read and checked the same way by the shape
// function and by the kernels.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_DEFORM_CONV_ATTRS_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_DEFORM_CONV_ATTRS_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tf_ops/cc/kernels/portable/deform_conv.h"

namespace keras_dcn {

struct DeformConvAttrs {
  std::vector<int64_t> strides;    // [stride_h, stride_w]
  std::vector<int64_t> dilations;  // [dilation_h, dilation_w]
  Padding padding = Padding::kValid;
  std::vector<int64_t> explicit_paddings;  // [top, bottom, left, right]
  int64_t groups = 1;
  int64_t deformable_groups = 1;

  // Reads and validates the attributes from an OpKernelConstruction or an
  // InferenceContext (both offer GetAttr).
  template <typename Context>
  absl::Status Read(Context* context) {
    std::string padding_name;
    TF_RETURN_IF_ERROR(context->GetAttr("strides", &strides));
    TF_RETURN_IF_ERROR(context->GetAttr("dilations", &dilations));
    TF_RETURN_IF_ERROR(context->GetAttr("padding", &padding_name));
    TF_RETURN_IF_ERROR(context->GetAttr("explicit_paddings", &explicit_paddings));
    TF_RETURN_IF_ERROR(context->GetAttr("groups", &groups));
    TF_RETURN_IF_ERROR(context->GetAttr("deformable_groups", &deformable_groups));
    return Check(padding_name);
  }

 private:
  absl::Status Check(const std::string& padding_name) {
    auto in_range = [](const std::vector<int64_t>& values, int64_t low) {
      for (int64_t v : values) {
        if (v < low || v > kMaxConvSize) return false;
      }
      return true;
    };
    if (strides.size() != 2 || !in_range(strides, 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strides must be two integers in [1, 2^30] [stride_h, stride_w], got [",
          absl::StrJoin(strides, ", "), "]"));
    }
    if (dilations.size() != 2 || !in_range(dilations, 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dilation_rate must be two integers in [1, 2^30] [dilation_h, dilation_w], "
          "got [",
          absl::StrJoin(dilations, ", "), "]"));
    }
    if (padding_name == "VALID") {
      padding = Padding::kValid;
    } else if (padding_name == "SAME") {
      padding = Padding::kSame;
    } else {
      padding = Padding::kExplicit;
    }
    if (padding == Padding::kExplicit) {
      if (explicit_paddings.size() != 4 || !in_range(explicit_paddings, 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "explicit_paddings must be four integers in [0, 2^30] [top, bottom, "
            "left, right] with padding='EXPLICIT', got [",
            absl::StrJoin(explicit_paddings, ", "), "]"));
      }
    } else if (!explicit_paddings.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("explicit_paddings must be empty unless padding='EXPLICIT', got [",
                       absl::StrJoin(explicit_paddings, ", "), "]"));
    }
    if (groups < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("groups must be a positive integer, got ", groups));
    }
    if (deformable_groups < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "deformable_groups must be a positive integer, got ", deformable_groups));
    }
    return absl::OkStatus();
  }
};

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_DEFORM_CONV_ATTRS_H_
