// GPU specialisations of the DeformConv2D functors (portable/deform_conv.h): thin
// launchers of the CUDA kernels in portable/deform_conv.cuh on the op's stream.
// Compiled by nvcc only.
#if GOOGLE_CUDA
#ifndef EIGEN_USE_GPU
#define EIGEN_USE_GPU
#endif

#include "tf_ops/cc/kernels/cuda/tf_gpu_launch.cuh"
#include "tf_ops/cc/kernels/float_types.h"
#include "tf_ops/cc/kernels/portable/deform_conv.cuh"
#include "tf_ops/cc/kernels/portable/deform_conv.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace functor {

using GPUDevice = Eigen::GpuDevice;

template <typename T>
struct DeformConv2DForward<GPUDevice, T> {
  void operator()(const GPUDevice& device, const DeformConvGeometry& geometry,
                  const T* input, const T* offsets, const T* mask, const T* kernel,
                  const T* bias, T* output) {
    using D = typename gpu::CudaTypeOf<T>::type;
    const gpu::DeformConvTuning tuning;
    gpu::DeviceScratch scratch(device,
                               gpu::DeformConvForwardScratchBytes<D>(geometry, tuning));
    if (!scratch.ok()) return;
    gpu::DeformConvForward<D>(gpu::CudaExecutor(device.stream()), geometry, tuning,
                              gpu::AsCuda(input), gpu::AsCuda(offsets), gpu::AsCuda(mask),
                              gpu::AsCuda(kernel), gpu::AsCuda(bias), gpu::AsCuda(output),
                              scratch.get());
    gpu::CheckLaunches(cudaGetLastError(), "DcnDeformConv2D");
  }
};

template <typename T>
struct DeformConv2DBackward<GPUDevice, T> {
  void operator()(const GPUDevice& device, const DeformConvGeometry& geometry,
                  const T* input, const T* offsets, const T* mask, const T* kernel,
                  const T* output_grad, T* input_grad, T* offsets_grad, T* mask_grad,
                  T* kernel_grad, T* bias_grad) {
    using D = typename gpu::CudaTypeOf<T>::type;
    const gpu::DeformConvTuning tuning;
    gpu::DeviceScratch scratch(device,
                               gpu::DeformConvBackwardScratchBytes<D>(geometry, tuning));
    if (!scratch.ok()) return;
    gpu::DeformConvBackward<D>(
        gpu::CudaExecutor(device.stream()), geometry, tuning, gpu::AsCuda(input),
        gpu::AsCuda(offsets), gpu::AsCuda(mask), gpu::AsCuda(kernel),
        gpu::AsCuda(output_grad), gpu::AsCuda(input_grad), gpu::AsCuda(offsets_grad),
        gpu::AsCuda(mask_grad), gpu::AsCuda(kernel_grad), gpu::AsCuda(bias_grad),
        scratch.get());
    gpu::CheckLaunches(cudaGetLastError(), "DcnDeformConv2DGrad");
  }
};

#define DCN_INSTANTIATE(T)                           \
  template struct DeformConv2DForward<GPUDevice, T>; \
  template struct DeformConv2DBackward<GPUDevice, T>;
DCN_CALL_FLOAT_TYPES(DCN_INSTANTIATE)
#undef DCN_INSTANTIATE

}  // namespace functor
}  // namespace keras_dcn

#endif  // GOOGLE_CUDA
