// Accumulation-type buffers of the CPU kernels: half types are computed in float, float
// in float and double in double (AccumulatorOf, portable/accumulator.h). Where T
// already is the accumulation type the helpers hand out the caller's own buffers, so
// nothing is copied. The *OnAllThreads helpers convert large buffers on the device's
// thread pool.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_ACCUMULATION_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_ACCUMULATION_H_

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#define EIGEN_USE_THREADS
#include "tf_ops/cc/kernels/cpu/channel_loops.h"
#include "tf_ops/cc/kernels/cpu/parallel.h"
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

// The type channel_loops.h reads and writes T's values as: T itself, or the bits of
// a 16-bit float type.
template <typename T>
struct LoopTypeOf {
  using type = T;
};
template <>
struct LoopTypeOf<Eigen::half> {
  using type = HalfBits;
};
template <>
struct LoopTypeOf<Eigen::bfloat16> {
  using type = Bfloat16Bits;
};

// `values` as channel_loops.h's type (same layout), const or not as `values` is.
template <typename T>
auto AsLoopType(T* values) {
  using Loop = typename LoopTypeOf<std::remove_const_t<T>>::type;
  if constexpr (std::is_const<T>::value) {
    return reinterpret_cast<const Loop*>(values);
  } else {
    return reinterpret_cast<Loop*>(values);
  }
}

// dst[i] = static_cast<To>(src[i]) for i < n, on the calling thread: channel_loops.h's
// vector conversions between float and a 16-bit type where they run, else an Eigen
// array cast.
template <typename From, typename To>
void Convert(const From* src, int64_t n, To* dst) {
  if (ChannelLoopsInUse()) {
    if constexpr (std::is_same<From, float>::value &&
                  (std::is_same<To, Eigen::half>::value ||
                   std::is_same<To, Eigen::bfloat16>::value)) {
      return ConvertFromFloat(src, n, AsLoopType(dst));
    }
    if constexpr (std::is_same<To, float>::value &&
                  (std::is_same<From, Eigen::half>::value ||
                   std::is_same<From, Eigen::bfloat16>::value)) {
      return ConvertToFloat(AsLoopType(src), n, dst);
    }
  }
  ArrayOf(dst, n) = CastArray<To>(src, n);
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
  Convert(values, n, out);
}

// `n` values of T in the accumulation type: `values` itself, or a conversion into
// `scratch`.
template <typename T>
const typename AccumulatorOf<T>::type* LoadAccumulated(
    const T* values, int64_t n, typename AccumulatorOf<T>::type* scratch) {
  if constexpr (kIsAccumulator<T>) {
    return values;
  } else {
    Convert(values, n, scratch);
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

// dst[i] = static_cast<To>(src[i]) for i < n, on all threads (Convert on ranges).
template <typename From, typename To>
void ConvertOnAllThreads(const Eigen::ThreadPoolDevice& device, const From* src,
                         int64_t n, To* dst) {
  ParallelFor(device, n, 2.0, [&](int64_t begin, int64_t end) {
    Convert(src + begin, end - begin, dst + begin);
  });
}

// `n` values of T in the accumulation type: `values` itself when T is that type,
// otherwise their conversion into `scratch` (room for n values), on all threads.
template <typename T>
const typename AccumulatorOf<T>::type* InAccumulator(
    const Eigen::ThreadPoolDevice& device, const T* values, int64_t n,
    typename AccumulatorOf<T>::type* scratch) {
  if constexpr (kIsAccumulator<T>) {
    return values;
  } else {
    ConvertOnAllThreads(device, values, n, scratch);
    return scratch;
  }
}

// values[i] = 0 for i < n, on all threads.
template <typename Acc>
void ZeroOnAllThreads(const Eigen::ThreadPoolDevice& device, Acc* values, int64_t n) {
  ParallelFor(device, n, 1.0, [&](int64_t begin, int64_t end) {
    std::fill(values + begin, values + end, Acc(0));
  });
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
