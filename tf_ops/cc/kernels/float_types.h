// The floating-point types of the ops, listed once. DCN_CALL_FLOAT_TYPES(m) expands to
// m(T) for each of them, in the spirit of TensorFlow's TF_CALL_* macros: the op
// kernels are registered and the CPU and GPU functors instantiated through it, and
// FloatTypeAttr() builds the ops' type attribute from it.
//
// A new type is one more entry here and in FLOAT_DTYPES (keras_dcn/ops/_args.py),
// plus the trait specialisations the type genuinely needs: AccumulatorOf
// (portable/accumulator.h) when it is not summed in float, CudaTypeOf
// (cuda/tf_gpu_launch.cuh) when the CUDA kernels see it as another type, and
// Converter (portable/gpu_utils.cuh) when a static_cast does not convert it on the
// device.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_FLOAT_TYPES_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_FLOAT_TYPES_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tensorflow/core/framework/types.h"

// m(T) for each float type of the ops, in the order of their type attribute.
#define DCN_CALL_FLOAT_TYPES(m) m(Eigen::half) m(Eigen::bfloat16) m(float) m(double)

namespace keras_dcn {

// The type attribute of every op: "T: {half, bfloat16, float, double}".
inline std::string FloatTypeAttr() {
  std::vector<std::string> names;
#define DCN_ADD_TYPE_NAME(T) \
  names.push_back(::tensorflow::DataTypeString(::tensorflow::DataTypeToEnum<T>::value));
  DCN_CALL_FLOAT_TYPES(DCN_ADD_TYPE_NAME)
#undef DCN_ADD_TYPE_NAME
  return absl::StrCat("T: {", absl::StrJoin(names, ", "), "}");
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_FLOAT_TYPES_H_
