// Building blocks of the CUDA kernels: conversions, atomics, a scratch-memory layout
// and two executors that run "for every work item" loops.
//
// This header does not depend on TensorFlow. Every kernel of the ops is a functor
// whose `operator()(Index i)` does one work item and is DCN_HOST_DEVICE; an executor
// runs it for all i:
//   * CudaExecutor (nvcc only) launches a grid-stride __global__ loop on a stream;
//   * HostExecutor runs a plain loop on the host. Compiled by a host compiler alone,
//     these headers give the same kernel bodies without any CUDA runtime, which is
//     how the device code is checked on machines without a GPU (tests/gpu/).
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_GPU_UTILS_CUH_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_GPU_UTILS_CUH_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include "tf_ops/cc/kernels/portable/accumulator.h"
#include "tf_ops/cc/kernels/portable/bilinear.h"  // DCN_HOST_DEVICE

namespace keras_dcn {
namespace gpu {

// Value conversion between an element type and an accumulation type.
template <typename To, typename From>
struct Converter {
  static DCN_HOST_DEVICE To Run(From v) { return static_cast<To>(v); }
};
#if defined(__CUDACC__)
template <>
struct Converter<float, __half> {
  static DCN_HOST_DEVICE float Run(__half v) { return __half2float(v); }
};
template <>
struct Converter<__half, float> {
  static DCN_HOST_DEVICE __half Run(float v) { return __float2half_rn(v); }
};
template <>
struct Converter<float, __nv_bfloat16> {
  static DCN_HOST_DEVICE float Run(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <>
struct Converter<__nv_bfloat16, float> {
  static DCN_HOST_DEVICE __nv_bfloat16 Run(float v) { return __float2bfloat16_rn(v); }
};
#endif

template <typename To, typename From>
DCN_HOST_DEVICE To Convert(From v) {
  return Converter<To, From>::Run(v);
}

// *target += value, safe against concurrent adds on the device. On the host the
// work items run one after another, so a plain add is enough there.
template <typename Acc>
DCN_HOST_DEVICE void AtomicAdd(Acc* target, Acc value) {
#if defined(__CUDA_ARCH__)
  atomicAdd(target, value);
#else
  *target += value;
#endif
}

// Largest work-item count (and any size a kernel indexes with) for which the kernels
// use 32-bit index arithmetic; beyond it they use 64-bit. Leaves room for the grid
// stride so that `i += stride` never overflows.
constexpr int64_t kMaxNarrowIndex = int64_t{1} << 30;

// Carves one scratch allocation into aligned buffers. Used twice with the same
// calls: once without a base to learn the size, once with it to get the pointers.
class ScratchLayout {
 public:
  explicit ScratchLayout(void* base = nullptr) : base_(static_cast<char*>(base)) {}

  template <typename U>
  U* Take(int64_t count) {
    const size_t offset = size_;
    size_ += (static_cast<size_t>(count) * sizeof(U) + kAlign - 1) / kAlign * kAlign;
    return base_ == nullptr ? nullptr : reinterpret_cast<U*>(base_ + offset);
  }
  size_t size() const { return size_; }

 private:
  static constexpr size_t kAlign = 256;
  char* base_;
  size_t size_ = 0;
};

// dst[i] = Convert<T>(src[i]): writes accumulated values to an output.
template <typename T, typename Acc, typename Index>
struct StoreConverted {
  const Acc* src;
  T* dst;
  DCN_HOST_DEVICE void operator()(Index i) const { dst[i] = Convert<T>(src[i]); }
};

// Runs the kernels on the host, one work item (or one GEMM thread) after another.
class HostExecutor {
 public:
  explicit HostExecutor(bool wide_index = false) : wide_index_(wide_index) {}

  // Whether kernels must use 64-bit indices for sizes up to `largest`.
  bool NeedsWideIndex(int64_t largest) const {
    return wide_index_ || largest > kMaxNarrowIndex;
  }

  template <typename Index, typename F>
  void ForEach(int64_t n, const F& f) const {
    for (Index i = 0; i < static_cast<Index>(n); ++i) f(i);
  }

  // Runs a tiled GEMM (tiled_gemm.cuh) block by block; within a block, each phase
  // between two barriers runs for every thread before the next phase starts.
  template <typename G>
  void Gemm(const G& gemm) const {
    for (int64_t z = 0; z < gemm.grid_z(); ++z) {
      for (int64_t x = 0; x < gemm.grid_x(); ++x) {
        typename G::Shared shared;
        std::vector<typename G::Accumulators> acc(G::kThreads);
        for (int t = 0; t < G::kThreads; ++t) acc[t].Clear();
        int64_t k_begin, k_end;
        gemm.KRange(z, &k_begin, &k_end);
        for (int64_t k0 = k_begin; k0 < k_end; k0 += G::kTileK) {
          for (int t = 0; t < G::kThreads; ++t) gemm.Load(x, z, t, k0, k_end, &shared);
          for (int t = 0; t < G::kThreads; ++t) gemm.Multiply(t, shared, &acc[t]);
        }
        for (int t = 0; t < G::kThreads; ++t) gemm.Store(x, z, t, acc[t]);
      }
    }
  }

  void Zero(void* ptr, size_t bytes) const {
    if (bytes > 0) std::memset(ptr, 0, bytes);
  }

  // Host-to-"device" copy (both are host memory here).
  void CopyFromHost(void* dst, const void* src, size_t bytes) const {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }

  int status() const { return 0; }

 private:
  bool wide_index_;
};

#if defined(__CUDACC__)

constexpr int kForEachThreads = 256;
// Grid-stride loops need no more blocks than this to fill any current GPU.
constexpr int64_t kMaxForEachBlocks = int64_t{1} << 16;

template <typename F, typename Index>
__global__ void __launch_bounds__(kForEachThreads)
    ForEachKernel(const F f, const Index n) {
  const Index stride = static_cast<Index>(blockDim.x) * static_cast<Index>(gridDim.x);
  for (Index i = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) +
                 static_cast<Index>(threadIdx.x);
       i < n; i += stride) {
    f(i);
  }
}

template <typename G>
__global__ void __launch_bounds__(G::kThreads) TiledGemmKernel(const G gemm) {
  __shared__ typename G::Shared shared;
  typename G::Accumulators acc;
  acc.Clear();
  const int t = static_cast<int>(threadIdx.x);
  int64_t k_begin, k_end;
  gemm.KRange(blockIdx.z, &k_begin, &k_end);
  for (int64_t k0 = k_begin; k0 < k_end; k0 += G::kTileK) {
    gemm.Load(blockIdx.x, blockIdx.z, t, k0, k_end, &shared);
    __syncthreads();
    gemm.Multiply(t, shared, &acc);
    __syncthreads();
  }
  gemm.Store(blockIdx.x, blockIdx.z, t, acc);
}

// Launches the kernels on a CUDA stream. Launch errors are sticky in the CUDA
// runtime; status() returns the first one (and clears it).
class CudaExecutor {
 public:
  explicit CudaExecutor(cudaStream_t stream, bool wide_index = false)
      : stream_(stream), wide_index_(wide_index) {}

  bool NeedsWideIndex(int64_t largest) const {
    return wide_index_ || largest > kMaxNarrowIndex;
  }

  template <typename Index, typename F>
  void ForEach(int64_t n, const F& f) const {
    if (n <= 0) return;
    const int64_t blocks =
        std::min(kMaxForEachBlocks, (n + kForEachThreads - 1) / kForEachThreads);
    ForEachKernel<F, Index>
        <<<static_cast<unsigned>(blocks), kForEachThreads, 0, stream_>>>(
            f, static_cast<Index>(n));
  }

  template <typename G>
  void Gemm(const G& gemm) const {
    if (gemm.grid_x() <= 0 || gemm.grid_z() <= 0) return;
    const dim3 grid(static_cast<unsigned>(gemm.grid_x()), 1,
                    static_cast<unsigned>(gemm.grid_z()));
    TiledGemmKernel<G><<<grid, G::kThreads, 0, stream_>>>(gemm);
  }

  void Zero(void* ptr, size_t bytes) const {
    if (bytes > 0) cudaMemsetAsync(ptr, 0, bytes, stream_);
  }

  void CopyFromHost(void* dst, const void* src, size_t bytes) const {
    if (bytes > 0) cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_);
  }

  cudaError_t status() const { return cudaGetLastError(); }

 private:
  cudaStream_t stream_;
  bool wide_index_;
};

#endif  // defined(__CUDACC__)

}  // namespace gpu
}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_GPU_UTILS_CUH_
