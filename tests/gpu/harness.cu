// A C interface over the TensorFlow-free kernels of deform_conv.cuh and
// deform_roi_pool.cuh, loaded with ctypes by run_harness.py and
// test_device_code_on_host.py.
//
// Built by nvcc (build.sh), the functions queue the CUDA kernels on the given stream
// (device pointers). Built by a host C++ compiler (build.sh --host), the very same
// kernel bodies run as plain loops on host pointers, and `stream` is ignored.
//
// dtype codes: 0 float16, 1 bfloat16, 2 float32, 3 float64 (the host build has
// float32 and float64 only). Return value: 0 on success, -1 for an unsupported dtype,
// otherwise the CUDA error of the launches.
#include <cstdint>

#include "tf_ops/cc/kernels/portable/deform_conv.cuh"
#include "tf_ops/cc/kernels/portable/deform_roi_pool.cuh"

namespace {

using keras_dcn::DeformConvGeometry;
using keras_dcn::DeformRoiPoolGeometry;
using keras_dcn::gpu::DeformConvTuning;

#if defined(__CUDACC__)
using Executor = keras_dcn::gpu::CudaExecutor;
Executor MakeExecutor(void* stream, bool wide_index) {
  return Executor(static_cast<cudaStream_t>(stream), wide_index);
}
#else
using Executor = keras_dcn::gpu::HostExecutor;
Executor MakeExecutor(void*, bool wide_index) { return Executor(wide_index); }
#endif

// The 17 fields of DeformConvGeometry, in declaration order.
DeformConvGeometry ConvGeometry(const int64_t* v) {
  DeformConvGeometry g;
  g.batch = v[0];
  g.in_height = v[1];
  g.in_width = v[2];
  g.in_channels = v[3];
  g.out_height = v[4];
  g.out_width = v[5];
  g.filters = v[6];
  g.kernel_h = v[7];
  g.kernel_w = v[8];
  g.stride_h = v[9];
  g.stride_w = v[10];
  g.dilation_h = v[11];
  g.dilation_w = v[12];
  g.pad_top = v[13];
  g.pad_left = v[14];
  g.groups = v[15];
  g.deformable_groups = v[16];
  return g;
}

// tuning: null for the defaults, else [column_elements, split_k_rows, wide_index].
DeformConvTuning ConvTuning(const int64_t* v) {
  DeformConvTuning t;
  if (v != nullptr) {
    t.column_elements = v[0];
    t.split_k_rows = v[1];
  }
  return t;
}

bool WideIndex(const int64_t* tuning) { return tuning != nullptr && tuning[2] != 0; }

// geometry: [batch, height, width, channels, num_rois, out_height, out_width,
// sampling_ratio, aligned]; attrs: [spatial_scale, gamma].
DeformRoiPoolGeometry RoiGeometry(const int64_t* v, const double* attrs) {
  DeformRoiPoolGeometry g;
  g.batch = v[0];
  g.height = v[1];
  g.width = v[2];
  g.channels = v[3];
  g.num_rois = v[4];
  g.out_height = v[5];
  g.out_width = v[6];
  g.sampling_ratio = v[7];
  g.aligned = v[8] != 0;
  g.spatial_scale = attrs[0];
  g.gamma = attrs[1];
  return g;
}

// Calls f(T{}) with T the element type of `dtype`; false if there is none.
template <typename F>
bool WithType(int dtype, F&& f) {
  switch (dtype) {
#if defined(__CUDACC__)
    case 0:
      f(__half());
      return true;
    case 1:
      f(__nv_bfloat16());
      return true;
#endif
    case 2:
      f(float());
      return true;
    case 3:
      f(double());
      return true;
    default:
      return false;
  }
}

template <typename T>
const T* In(const void* p) {
  return static_cast<const T*>(p);
}
template <typename T>
T* Out(void* p) {
  return static_cast<T*>(p);
}
// RoIs are float32, or float64 for float64 features (RoiCoordinate).
template <typename T>
const keras_dcn::RoiCoordinate<T>* Rois(const void* p) {
  return static_cast<const keras_dcn::RoiCoordinate<T>*>(p);
}

}  // namespace

extern "C" {

int dcn_has_cuda() {
#if defined(__CUDACC__)
  return 1;
#else
  return 0;
#endif
}

int dcn_conv_scratch_bytes(int dtype, int backward, const int64_t* geometry,
                           const int64_t* tuning, uint64_t* bytes) {
  const DeformConvGeometry g = ConvGeometry(geometry);
  const DeformConvTuning t = ConvTuning(tuning);
  const bool ok = WithType(dtype, [&](auto zero) {
    using T = decltype(zero);
    *bytes = backward ? keras_dcn::gpu::DeformConvBackwardScratchBytes<T>(g, t)
                      : keras_dcn::gpu::DeformConvForwardScratchBytes<T>(g, t);
  });
  return ok ? 0 : -1;
}

int dcn_conv_forward(int dtype, const int64_t* geometry, const int64_t* tuning,
                     const void* input, const void* offsets, const void* mask,
                     const void* kernel, const void* bias, void* output, void* scratch,
                     void* stream) {
  const DeformConvGeometry g = ConvGeometry(geometry);
  const Executor exec = MakeExecutor(stream, WideIndex(tuning));
  const bool ok = WithType(dtype, [&](auto zero) {
    using T = decltype(zero);
    keras_dcn::gpu::DeformConvForward<T>(exec, g, ConvTuning(tuning), In<T>(input),
                                         In<T>(offsets), In<T>(mask), In<T>(kernel),
                                         In<T>(bias), Out<T>(output), scratch);
  });
  return ok ? static_cast<int>(exec.status()) : -1;
}

int dcn_conv_backward(int dtype, const int64_t* geometry, const int64_t* tuning,
                      const void* input, const void* offsets, const void* mask,
                      const void* kernel, const void* output_grad, void* input_grad,
                      void* offsets_grad, void* mask_grad, void* kernel_grad,
                      void* bias_grad, void* scratch, void* stream) {
  const DeformConvGeometry g = ConvGeometry(geometry);
  const Executor exec = MakeExecutor(stream, WideIndex(tuning));
  const bool ok = WithType(dtype, [&](auto zero) {
    using T = decltype(zero);
    keras_dcn::gpu::DeformConvBackward<T>(
        exec, g, ConvTuning(tuning), In<T>(input), In<T>(offsets), In<T>(mask),
        In<T>(kernel), In<T>(output_grad), Out<T>(input_grad), Out<T>(offsets_grad),
        Out<T>(mask_grad), Out<T>(kernel_grad), Out<T>(bias_grad), scratch);
  });
  return ok ? static_cast<int>(exec.status()) : -1;
}

int dcn_roi_pool_scratch_bytes(int dtype, const int64_t* geometry, const double* attrs,
                               uint64_t* bytes) {
  const DeformRoiPoolGeometry g = RoiGeometry(geometry, attrs);
  const bool ok = WithType(dtype, [&](auto zero) {
    using T = decltype(zero);
    *bytes = keras_dcn::gpu::DeformRoiPoolBackwardScratchBytes<T>(g);
  });
  return ok ? 0 : -1;
}

int dcn_roi_pool_forward(int dtype, const int64_t* geometry, const double* attrs,
                         int wide_index, const void* features, const void* rois,
                         const void* offsets, const void* mask, void* output,
                         void* stream) {
  const DeformRoiPoolGeometry g = RoiGeometry(geometry, attrs);
  const Executor exec = MakeExecutor(stream, wide_index != 0);
  const bool ok = WithType(dtype, [&](auto zero) {
    using T = decltype(zero);
    keras_dcn::gpu::DeformRoiPoolForward<T>(exec, g, In<T>(features), Rois<T>(rois),
                                            In<T>(offsets), In<T>(mask), Out<T>(output));
  });
  return ok ? static_cast<int>(exec.status()) : -1;
}

int dcn_roi_pool_backward(int dtype, const int64_t* geometry, const double* attrs,
                          int wide_index, const void* features, const void* rois,
                          const void* offsets, const void* mask, const void* output_grad,
                          void* features_grad, void* offsets_grad, void* mask_grad,
                          void* scratch, void* stream) {
  const DeformRoiPoolGeometry g = RoiGeometry(geometry, attrs);
  const Executor exec = MakeExecutor(stream, wide_index != 0);
  const bool ok = WithType(dtype, [&](auto zero) {
    using T = decltype(zero);
    keras_dcn::gpu::DeformRoiPoolBackward<T>(
        exec, g, In<T>(features), Rois<T>(rois), In<T>(offsets), In<T>(mask),
        In<T>(output_grad), Out<T>(features_grad), Out<T>(offsets_grad),
        Out<T>(mask_grad), scratch);
  });
  return ok ? static_cast<int>(exec.status()) : -1;
}

}  // extern "C"
