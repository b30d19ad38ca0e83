// Accumulation-type buffers of the CPU kernels: half types are computed in float, float
// in float and double in double (AccumulatorOf, portable/accumulator.h). Where T
// already is the accumulation type the helpers hand out the caller's own buffers, so
// nothing is copied. The *OnAllThreads helpers convert large buffers on the device's
// thread pool.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_ACCUMULATION_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_ACCUMULATION_H_

#include <cstdint>
#include <vector>

#define EIGEN_USE_THREADS
#include "tf_ops/cc/kernels/portable/accumulator.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {

// `n` values at `values` as an Eigen array (a vectorised view of a plain buffer).
template <typename T>
inline Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> ArrayOf(T* values, int64_t n) {
  return Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(values, n);
}

// `n` values at `values` converted to To, as an Eigen array expression: reading a half
// type through it converts whole vectors at a time, where a loop of scalar
// conversions would not.
template <typename To, typename T>
inline auto CastArray(const T* values, int64_t n) {
  return Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(values, n)
      .template cast<To>();
}

// The buffer to accumulate into for the final destination `out`: `out` itself when T
// is the accumulation type, otherwise `scratch`.
template <typename T>
typename AccumulatorOf<T>::type* AccumulatorTarget(
    T* out, typename AccumulatorOf<T>::type* scratch) {
  if constexpr (kIsAccumulator<T>) {
    return out;
  } else {
    return scratch;
  }
}

// Writes `n` accumulated values to `out` (nothing to do when they are already there).
template <typename T>
void StoreAccumulated(const typename AccumulatorOf<T>::type* values, int64_t n, T* out) {
  if constexpr (kIsAccumulator<T>) {
    if (values == out) return;
  }
  ArrayOf(out, n) = CastArray<T>(values, n);
}

// `n` values of T in the accumulation type: `values` itself, or a conversion into
// `scratch`.
template <typename T>
const typename AccumulatorOf<T>::type* LoadAccumulated(
    const T* values, int64_t n, typename AccumulatorOf<T>::type* scratch) {
  if constexpr (kIsAccumulator<T>) {
    return values;
  } else {
    ArrayOf(scratch, n) = CastArray<typename AccumulatorOf<T>::type>(values, n);
    return scratch;
  }
}

// A read-only view of `n` values of T in the accumulation type: the values
// themselves, or a converted copy.
template <typename T>
class AccumulatorCopy {
 public:
  using Acc = typename AccumulatorOf<T>::type;

  AccumulatorCopy(const T* values, int64_t n) {
    if constexpr (!kIsAccumulator<T>) copy_.resize(n);
    data_ = LoadAccumulated<T>(values, n, copy_.data());
  }
  const Acc* data() const { return data_; }

 private:
  std::vector<Acc> copy_;
  const Acc* data_ = nullptr;
};

// dst[i] = static_cast<To>(src[i]) for i < n, on all threads (an Eigen tensor cast,
// vectorised for the half types, unlike a loop of scalar conversions).
template <typename From, typename To>
void ConvertOnAllThreads(const Eigen::ThreadPoolDevice& device, const From* src,
                         int64_t n, To* dst) {
  using Index = Eigen::Index;
  Eigen::TensorMap<Eigen::Tensor<To, 1, Eigen::RowMajor, Index>> out(dst, n);
  Eigen::TensorMap<Eigen::Tensor<const From, 1, Eigen::RowMajor, Index>> in(src, n);
  out.device(device) = in.template cast<To>();
}

// `n` values of T in the accumulation type: `values` itself when T is that type,
// otherwise their conversion into `scratch` (resized to n).
template <typename T>
const typename AccumulatorOf<T>::type* InAccumulator(
    const Eigen::ThreadPoolDevice& device, const T* values, int64_t n,
    std::vector<typename AccumulatorOf<T>::type>* scratch) {
  if constexpr (kIsAccumulator<T>) {
    return values;
  } else {
    scratch->resize(n);
    ConvertOnAllThreads(device, values, n, scratch->data());
    return scratch->data();
  }
}

// Writes `n` accumulated values to `out`, on all threads (nothing to do when they
// are already there).
template <typename T>
void StoreOnAllThreads(const Eigen::ThreadPoolDevice& device,
                       const typename AccumulatorOf<T>::type* values, int64_t n, T* out) {
  if constexpr (!kIsAccumulator<T>) ConvertOnAllThreads(device, values, n, out);
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_ACCUMULATION_H_
