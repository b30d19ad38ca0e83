// What the TensorFlow GPU launchers (cuda/*_gpu.cu.cc) share: the CUDA element type of
// each TensorFlow type, and scratch memory from the op's GPU allocator.
//
// Unlike the .cuh headers in portable/ this one depends on TensorFlow's Eigen, and only
// nvcc-compiled launchers include it.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CUDA_TF_GPU_LAUNCH_CUH_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CUDA_TF_GPU_LAUNCH_CUH_

#if GOOGLE_CUDA

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace gpu {

// Eigen::half and Eigen::bfloat16 have the bit layout of CUDA's __half and
// __nv_bfloat16, so tensors are handed to the kernels by reinterpreting pointers.
template <typename T>
struct CudaTypeOf {
  using type = T;
};
template <>
struct CudaTypeOf<Eigen::half> {
  using type = __half;
};
template <>
struct CudaTypeOf<Eigen::bfloat16> {
  using type = __nv_bfloat16;
};
static_assert(sizeof(Eigen::half) == sizeof(__half), "half layouts differ");
static_assert(sizeof(Eigen::bfloat16) == sizeof(__nv_bfloat16),
              "bfloat16 layouts differ");

template <typename T>
const typename CudaTypeOf<T>::type* AsCuda(const T* p) {
  return reinterpret_cast<const typename CudaTypeOf<T>::type*>(p);
}
template <typename T>
typename CudaTypeOf<T>::type* AsCuda(T* p) {
  return reinterpret_cast<typename CudaTypeOf<T>::type*>(p);
}

// Scratch memory for one op call, from the allocator behind the op's GpuDevice and
// given back when this object goes out of scope. TensorFlow's GPU allocator orders
// reuse by its compute stream, so giving it back right after queueing the kernels
// that use it is safe. When the allocation fails, TensorFlow has already set a
// ResourceExhausted status on the op, and ok() is false: launch nothing then.
class DeviceScratch {
 public:
  DeviceScratch(const Eigen::GpuDevice& device, size_t bytes)
      : device_(device),
        data_(bytes > 0 ? device.allocate(bytes) : nullptr),
        ok_(bytes == 0 || data_ != nullptr) {}
  ~DeviceScratch() {
    if (data_ != nullptr) device_.deallocate(data_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  bool ok() const { return ok_; }
  void* get() const { return data_; }

 private:
  const Eigen::GpuDevice& device_;
  void* data_;
  bool ok_;
};

// Stops the process when the kernels of `op` could not be launched: the functors
// cannot report an error to the op, and going on would hand out unwritten outputs.
// The usual causes are a driver older than the CUDA runtime linked into the library
// and a GPU whose architecture the library was not built for.
inline void CheckLaunches(cudaError_t status, const char* op) {
  if (status == cudaSuccess) return;
  std::fprintf(stderr,
               "keras_dcn: the CUDA kernels of %s failed: %s (%s). The op library was "
               "built with CUDA runtime %d.%d; check that the driver supports it and "
               "that the GPU's architecture was among KERAS_DCN_CUDA_ARCHS when it was "
               "built.\n",
               op, cudaGetErrorName(status), cudaGetErrorString(status),
               CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
  std::abort();
}

}  // namespace gpu
}  // namespace keras_dcn

#endif  // GOOGLE_CUDA
#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CUDA_TF_GPU_LAUNCH_CUH_
