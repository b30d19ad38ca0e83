// Accumulation-type helpers for the CPU kernels: half types are computed in float,
// float in float and double in double. Where T already is the accumulation type the
// helpers hand out the caller's own buffers, so nothing is copied.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_UTILS_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_UTILS_H_

#include <cstdint>
#include <type_traits>
#include <vector>

namespace keras_dcn {

template <typename T>
struct AccumulatorOf {
  using type = float;
};
template <>
struct AccumulatorOf<double> {
  using type = double;
};

template <typename T>
constexpr bool kIsAccumulator =
    std::is_same<T, typename AccumulatorOf<T>::type>::value;

// A read-only view of `n` values of T in the accumulation type.
template <typename T>
class AccumulatorCopy {
 public:
  using Acc = typename AccumulatorOf<T>::type;

  AccumulatorCopy(const T* values, int64_t n) {
    if constexpr (kIsAccumulator<T>) {
      data_ = values;
    } else {
      copy_.resize(n);
      for (int64_t i = 0; i < n; ++i) copy_[i] = static_cast<Acc>(values[i]);
      data_ = copy_.data();
    }
  }
  const Acc* data() const { return data_; }

 private:
  std::vector<Acc> copy_;
  const Acc* data_ = nullptr;
};

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
void StoreAccumulated(const typename AccumulatorOf<T>::type* values, int64_t n,
                      T* out) {
  if constexpr (kIsAccumulator<T>) {
    if (values == out) return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(values[i]);
}

// `n` values of T in the accumulation type: `values` itself, or a conversion into
// `scratch`.
template <typename T>
const typename AccumulatorOf<T>::type* LoadAccumulated(
    const T* values, int64_t n, typename AccumulatorOf<T>::type* scratch) {
  if constexpr (kIsAccumulator<T>) {
    return values;
  } else {
    for (int64_t i = 0; i < n; ++i) scratch[i] = static_cast<float>(values[i]);
    return scratch;
  }
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_UTILS_H_
