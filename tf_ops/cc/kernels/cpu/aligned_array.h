// Arrays of the CPU kernels' scratch and packed values that start on a 64-byte cache
// line. An AVX-512 vector of 16 floats at a multiple of 16 values from the start then
// lies in one cache line; from `new[]`, which aligns large arrays to 16 bytes only,
// every such load and store is split over two lines.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_ALIGNED_ARRAY_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_ALIGNED_ARRAY_H_

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

namespace keras_dcn {

constexpr size_t kCacheLineBytes = 64;

struct FreeAlignedArray {
  void operator()(void* values) const { std::free(values); }
};

template <typename V>
using AlignedArray = std::unique_ptr<V[], FreeAlignedArray>;

// `n` uninitialised values (at least one is allocated, so the pointer is never null).
template <typename V>
AlignedArray<V> NewAlignedArray(int64_t n) {
  static_assert(std::is_trivially_copyable<V>::value &&
                    std::is_trivially_destructible<V>::value,
                "aligned arrays hold plain values");
  const size_t values = n > 0 ? static_cast<size_t>(n) : 1;
  const size_t bytes =
      (values * sizeof(V) + kCacheLineBytes - 1) / kCacheLineBytes * kCacheLineBytes;
  void* memory = std::aligned_alloc(kCacheLineBytes, bytes);
  if (memory == nullptr) throw std::bad_alloc();
  return AlignedArray<V>(static_cast<V*>(memory));
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_ALIGNED_ARRAY_H_
