// The type that sums of an element type are kept in, shared by the CPU and CUDA
// kernels: float for the half types (Eigen's or CUDA's) and float, double for double.
//
// This header does not depend on TensorFlow: it is plain C++ that nvcc can compile
// for the device as well as the host.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_ACCUMULATOR_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_ACCUMULATOR_H_

#include <type_traits>

namespace keras_dcn {

// AccumulatorOf<T>::type is the accumulation type of T.
template <typename T>
struct AccumulatorOf {
  using type = float;
};
template <>
struct AccumulatorOf<double> {
  using type = double;
};

// Whether T is its own accumulation type (then no conversion is needed).
template <typename T>
constexpr bool kIsAccumulator = std::is_same<T, typename AccumulatorOf<T>::type>::value;

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_ACCUMULATOR_H_
