// Shape checks shared by the op kernels, with errors that name the tensor and the
// shape it must have.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_SHAPE_CHECKS_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_SHAPE_CHECKS_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace keras_dcn {

// The error for a tensor `name` of shape `got` that must have the shape `expected`.
inline absl::Status ShapeError(const char* name, const std::string& expected,
                               const ::tensorflow::TensorShape& got) {
  return absl::InvalidArgumentError(
      absl::StrCat(name, " must have shape ", expected, ", got ", got.DebugString()));
}

// The shape `dims`, or an error naming `name` when its size overflows.
inline absl::Status BuildShape(const char* name, absl::Span<const int64_t> dims,
                               ::tensorflow::TensorShape* shape) {
  const absl::Status status = ::tensorflow::TensorShape::BuildTensorShape(dims, shape);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the expected shape of ", name, " [",
                                                   absl::StrJoin(dims, ", "),
                                                   "] is too large: ", status.message()));
  }
  return absl::OkStatus();
}

// Whether `shape` is exactly `dims` (compared one by one, so that huge attribute
// values never build an invalid TensorShape).
inline bool HasShape(const ::tensorflow::TensorShape& shape,
                     std::initializer_list<int64_t> dims) {
  if (shape.dims() != static_cast<int>(dims.size())) return false;
  int i = 0;
  for (int64_t d : dims) {
    if (shape.dim_size(i++) != d) return false;
  }
  return true;
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_SHAPE_CHECKS_H_
