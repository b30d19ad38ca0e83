// GPU specialisations of the DeformRoiPool functors (portable/deform_roi_pool.h):
// thin launchers of the CUDA kernels in portable/deform_roi_pool.cuh on the op's
// stream. Compiled by nvcc only.
//
// The GPU op kernels keep `rois` in host memory (HostMemory("rois")): the op kernel
// checks every RoI on the host before any launch. The launchers copy them to the
// device, into scratch memory, on the op's stream (see CopyRoisToDevice).
#if GOOGLE_CUDA
#ifndef EIGEN_USE_GPU
#define EIGEN_USE_GPU
#endif

#include <vector>

#include "tf_ops/cc/kernels/cuda/tf_gpu_launch.cuh"
#include "tf_ops/cc/kernels/float_types.h"
#include "tf_ops/cc/kernels/portable/deform_roi_pool.cuh"
#include "tf_ops/cc/kernels/portable/deform_roi_pool.h"
#include "tf_ops/cc/kernels/portable/gpu_utils.cuh"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace functor {

using GPUDevice = Eigen::GpuDevice;

namespace {

// Queues the copy of the host RoIs to `device_rois`. TensorFlow may hand the RoIs in
// pinned memory and reuse it as soon as the op returns, before an asynchronous copy
// from it has run; from pageable memory of our own, the CUDA runtime has taken the
// data by the time cudaMemcpyAsync returns.
template <typename R>
void CopyRoisToDevice(const gpu::CudaExecutor& exec, const R* rois, int64_t num_rois,
                      R* device_rois) {
  const std::vector<R> pageable(rois, rois + num_rois * 5);
  exec.CopyFromHost(device_rois, pageable.data(), pageable.size() * sizeof(R));
}

}  // namespace

template <typename T>
struct DeformRoiPoolForward<GPUDevice, T> {
  void operator()(const GPUDevice& device, const DeformRoiPoolGeometry& geometry,
                  const T* features, const RoiCoordinate<T>* rois, const T* offsets,
                  const T* mask, T* output) {
    using D = typename gpu::CudaTypeOf<T>::type;
    gpu::ScratchLayout layout;
    layout.Take<RoiCoordinate<T>>(geometry.num_rois * 5);
    gpu::DeviceScratch scratch(device, layout.size());
    if (!scratch.ok()) return;
    RoiCoordinate<T>* device_rois =
        gpu::ScratchLayout(scratch.get()).Take<RoiCoordinate<T>>(geometry.num_rois * 5);
    const gpu::CudaExecutor exec(device.stream());
    CopyRoisToDevice(exec, rois, geometry.num_rois, device_rois);
    gpu::DeformRoiPoolForward<D>(exec, geometry, gpu::AsCuda(features), device_rois,
                                 gpu::AsCuda(offsets), gpu::AsCuda(mask),
                                 gpu::AsCuda(output));
    gpu::CheckLaunches(cudaGetLastError(), "DcnDeformRoiPool");
  }
};

template <typename T>
struct DeformRoiPoolBackward<GPUDevice, T> {
  void operator()(const GPUDevice& device, const DeformRoiPoolGeometry& geometry,
                  const T* features, const RoiCoordinate<T>* rois, const T* offsets,
                  const T* mask, const T* output_grad, T* features_grad, T* offsets_grad,
                  T* mask_grad) {
    using D = typename gpu::CudaTypeOf<T>::type;
    const size_t kernel_bytes = gpu::DeformRoiPoolBackwardScratchBytes<D>(geometry);
    gpu::ScratchLayout layout;
    layout.Take<RoiCoordinate<T>>(geometry.num_rois * 5);
    layout.Take<char>(kernel_bytes);
    gpu::DeviceScratch scratch(device, layout.size());
    if (!scratch.ok()) return;
    gpu::ScratchLayout parts(scratch.get());
    RoiCoordinate<T>* device_rois = parts.Take<RoiCoordinate<T>>(geometry.num_rois * 5);
    void* kernel_scratch = parts.Take<char>(kernel_bytes);
    const gpu::CudaExecutor exec(device.stream());
    CopyRoisToDevice(exec, rois, geometry.num_rois, device_rois);
    gpu::DeformRoiPoolBackward<D>(
        exec, geometry, gpu::AsCuda(features), device_rois, gpu::AsCuda(offsets),
        gpu::AsCuda(mask), gpu::AsCuda(output_grad), gpu::AsCuda(features_grad),
        gpu::AsCuda(offsets_grad), gpu::AsCuda(mask_grad), kernel_scratch);
    gpu::CheckLaunches(cudaGetLastError(), "DcnDeformRoiPoolGrad");
  }
};

#define DCN_INSTANTIATE(T)                            \
  template struct DeformRoiPoolForward<GPUDevice, T>; \
  template struct DeformRoiPoolBackward<GPUDevice, T>;
DCN_CALL_FLOAT_TYPES(DCN_INSTANTIATE)
#undef DCN_INSTANTIATE

}  // namespace functor
}  // namespace keras_dcn

#endif  // GOOGLE_CUDA
