// Op kernels of DcnDeformRoiPool and DcnDeformRoiPoolGrad: validate the inputs
// (shapes and every RoI), allocate the outputs and hand the work to the device
// functors.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tf_ops/cc/kernels/deform_roi_pool_attrs.h"
#include "tf_ops/cc/kernels/float_types.h"
#include "tf_ops/cc/kernels/portable/deform_roi_pool.h"
#include "tf_ops/cc/kernels/portable/roi_sampling.h"
#include "tf_ops/cc/kernels/shape_checks.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using CPUDevice = Eigen::ThreadPoolDevice;

// Checks the shapes of features, rois, offsets and mask against each other and the
// attributes, and fills `g`.
absl::Status MakeGeometry(const DeformRoiPoolAttrs& attrs, const TensorShape& features,
                          const TensorShape& rois, const TensorShape& offsets,
                          const TensorShape& mask, DeformRoiPoolGeometry* g) {
  if (features.dims() != 4) {
    return ShapeError("features", "[batch, height, width, channels]", features);
  }
  if (rois.dims() != 2 || rois.dim_size(1) != 5) {
    return ShapeError("rois", "[num_rois, 5] ((batch_index, x1, y1, x2, y2) per row)",
                      rois);
  }
  g->batch = features.dim_size(0);
  g->height = features.dim_size(1);
  g->width = features.dim_size(2);
  g->channels = features.dim_size(3);
  g->num_rois = rois.dim_size(0);
  g->out_height = attrs.output_size[0];
  g->out_width = attrs.output_size[1];
  g->sampling_ratio = attrs.sampling_ratio;
  g->spatial_scale = DecimalValue(attrs.spatial_scale);
  g->gamma = DecimalValue(attrs.gamma);
  g->aligned = attrs.aligned;

  const std::string bins =
      absl::StrCat(g->num_rois, ", ", g->out_height, ", ", g->out_width);
  if (!HasShape(offsets, {g->num_rois, g->out_height, g->out_width, 2})) {
    return ShapeError("offsets",
                      absl::StrCat("[", bins,
                                   ", 2] ([num_rois, output_size[0], "
                                   "output_size[1], 2], (dy, dx) per bin)"),
                      offsets);
  }
  if (!HasShape(mask, {g->num_rois, g->out_height, g->out_width, 1})) {
    return ShapeError("mask",
                      absl::StrCat("[", bins,
                                   ", 1] ([num_rois, output_size[0], "
                                   "output_size[1], 1])"),
                      mask);
  }
  return absl::OkStatus();
}

// Checks every RoI: a finite batch index in [0, batch) (truncated to an integer
// like torchvision and mmcv do), finite corners with x1 <= x2 and y1 <= y2 that stay
// finite on the feature map in R (the kernels' coordinate type), and an adaptive
// sample grid within kMaxSamplesPerBin.
template <typename R>
absl::Status CheckRois(const DeformRoiPoolGeometry& g, const R* rois) {
  for (int64_t r = 0; r < g.num_rois; ++r) {
    const R* roi = rois + r * 5;
    const R index = roi[0];
    if (!(index >= R(0)) || !(index < static_cast<R>(g.batch)) ||
        static_cast<int64_t>(index) >= g.batch) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rois[", r, ", 0] (the batch index) must be a finite number in [0, ", g.batch,
          ") (the batch size of features), got ", index));
    }
    const std::string corners = absl::StrCat("(x1, y1, x2, y2) = (", roi[1], ", ", roi[2],
                                             ", ", roi[3], ", ", roi[4], ")");
    for (int k = 1; k < 5; ++k) {
      if (!std::isfinite(roi[k])) {
        return absl::InvalidArgumentError(
            absl::StrCat("rois[", r, "] must have finite coordinates, got ", corners));
      }
    }
    if (roi[3] < roi[1] || roi[4] < roi[2]) {
      return absl::InvalidArgumentError(
          absl::StrCat("rois[", r, "] must have x1 <= x2 and y1 <= y2, got ", corners));
    }
    // The geometry in double, so that nothing here overflows; the kernels use the
    // same formulas in their accumulation type.
    const RoiBox<double> box = RoiBoxOnMap<double>(roi, g.spatial_scale, g.aligned);
    const R scale = static_cast<R>(g.spatial_scale);
    const R scaled[4] = {roi[1] * scale, roi[2] * scale, roi[3] * scale, roi[4] * scale};
    const R extent[2] = {scaled[2] - scaled[0], scaled[3] - scaled[1]};
    bool finite = std::isfinite(extent[0]) && std::isfinite(extent[1]);
    for (R v : scaled) finite = finite && std::isfinite(v);
    if (!finite) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rois[", r, "] ", corners, " times spatial_scale (", g.spatial_scale,
          ") does not fit in ", std::is_same<R, float>::value ? "float32" : "float64"));
    }
    if (g.sampling_ratio <= 0) {
      const double grid_h = std::max(1.0, std::ceil(box.height / g.out_height));
      const double grid_w = std::max(1.0, std::ceil(box.width / g.out_width));
      if (grid_h * grid_w > static_cast<double>(kMaxSamplesPerBin)) {
        return absl::InvalidArgumentError(
            absl::StrCat("rois[", r, "] ", corners,
                         " is too large for sampling_ratio <= 0: its "
                         "bins would need ",
                         grid_h, " x ", grid_w, " samples each (at most ",
                         kMaxSamplesPerBin, "); pass a positive sampling_ratio"));
      }
    }
  }
  return absl::OkStatus();
}

// The RoIs in R, the kernels' coordinate type: the tensor's own data when it has that
// type, otherwise converted into `converted` (a float32 tensor for float64 features,
// or a float64 one for the others).
template <typename R>
const R* RoisAs(const Tensor& rois, std::vector<R>* converted) {
  if (rois.dtype() == ::tensorflow::DataTypeToEnum<R>::value) return rois.flat<R>().data();
  converted->resize(rois.NumElements());
  if (rois.dtype() == ::tensorflow::DT_FLOAT) {
    const auto values = rois.flat<float>();
    std::copy(values.data(), values.data() + values.size(), converted->begin());
  } else {
    const auto values = rois.flat<double>();
    std::transform(values.data(), values.data() + values.size(), converted->begin(),
                   [](double v) { return static_cast<R>(v); });
  }
  return converted->data();
}

// Shapes, geometry and RoI checks shared by both kernels; `*rois` points at the RoIs
// in the kernels' coordinate type (in `converted` if they had to be converted).
template <typename R>
absl::Status Prepare(const DeformRoiPoolAttrs& attrs, OpKernelContext* context,
                     DeformRoiPoolGeometry* g, std::vector<R>* converted,
                     const R** rois) {
  const Tensor& roi_tensor = context->input(1);
  TF_RETURN_IF_ERROR(MakeGeometry(attrs, context->input(0).shape(), roi_tensor.shape(),
                                  context->input(2).shape(), context->input(3).shape(),
                                  g));
  *rois = RoisAs(roi_tensor, converted);
  return CheckRois(*g, *rois);
}

template <typename Device, typename T>
class DeformRoiPoolOp : public OpKernel {
 public:
  explicit DeformRoiPoolOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, attrs_.Read(context));
  }

  void Compute(OpKernelContext* context) override {
    DeformRoiPoolGeometry g;
    std::vector<RoiCoordinate<T>> converted;
    const RoiCoordinate<T>* rois = nullptr;
    OP_REQUIRES_OK(context, Prepare(attrs_, context, &g, &converted, &rois));
    TensorShape output_shape;
    OP_REQUIRES_OK(
        context, TensorShape::BuildTensorShape(
                     {g.num_rois, g.out_height, g.out_width, g.channels}, &output_shape));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, output_shape, &output));
    if (output->NumElements() == 0) return;
    const Device& device = context->eigen_device<Device>();
    // (The GPU functor handles empty maps itself; this Eigen expression is
    // evaluated on the CPU only.)
    if constexpr (std::is_same<Device, CPUDevice>::value) {
      if (g.height == 0 || g.width == 0) {
        // Every sample lies outside an empty map.
        output->flat<T>().device(device) = output->flat<T>().constant(T(0));
        return;
      }
    }
    functor::DeformRoiPoolForward<Device, T>()(
        device, g, context->input(0).flat<T>().data(), rois,
        context->input(2).flat<T>().data(), context->input(3).flat<T>().data(),
        output->flat<T>().data());
  }

 private:
  DeformRoiPoolAttrs attrs_;
};

template <typename Device, typename T>
class DeformRoiPoolGradOp : public OpKernel {
 public:
  explicit DeformRoiPoolGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, attrs_.Read(context));
    OP_REQUIRES_OK(context,
                   context->GetAttr("coordinate_gradients", &coordinate_gradients_));
  }

  void Compute(OpKernelContext* context) override {
    DeformRoiPoolGeometry g;
    std::vector<RoiCoordinate<T>> converted;
    const RoiCoordinate<T>* rois = nullptr;
    OP_REQUIRES_OK(context, Prepare(attrs_, context, &g, &converted, &rois));
    const Tensor& output_grad = context->input(4);
    OP_REQUIRES(context,
                HasShape(output_grad.shape(),
                         {g.num_rois, g.out_height, g.out_width, g.channels}),
                ShapeError("output_grad",
                           absl::StrCat("[", g.num_rois, ", ", g.out_height, ", ",
                                        g.out_width, ", ", g.channels,
                                        "] ([num_rois, output_size[0], output_size[1], "
                                        "channels])"),
                           output_grad.shape()));

    // Without coordinate gradients, offsets_grad and mask_grad are empty; the CPU
    // kernel then skips them, the GPU kernel computes them into scratch tensors.
    Tensor* grads[3];
    for (int i = 0; i < 3; ++i) {
      const bool empty = i > 0 && !coordinate_gradients_;
      OP_REQUIRES_OK(context, context->allocate_output(
                                  i, empty ? TensorShape({0})
                                           : context->input(i == 0 ? 0 : i + 1).shape(),
                                  &grads[i]));
    }
    Tensor coordinate_scratch[2];
    T* coordinate_grads[2] = {nullptr, nullptr};
    for (int i = 0; i < 2; ++i) {
      if (coordinate_gradients_) {
        coordinate_grads[i] = grads[i + 1]->flat<T>().data();
      } else if constexpr (!std::is_same<Device, CPUDevice>::value) {
        OP_REQUIRES_OK(context, context->allocate_temp(
                                    ::tensorflow::DataTypeToEnum<T>::value,
                                    context->input(i + 2).shape(), &coordinate_scratch[i]));
        coordinate_grads[i] = coordinate_scratch[i].flat<T>().data();
      }
    }
    const Device& device = context->eigen_device<Device>();
    // (The GPU functor handles empty tensors itself; these Eigen expressions are
    // evaluated on the CPU only.)
    if constexpr (std::is_same<Device, CPUDevice>::value) {
      if (output_grad.NumElements() == 0 || g.height == 0 || g.width == 0) {
        // Nothing reaches the output, or every sample lies outside an empty map.
        for (Tensor* grad : grads) {
          grad->flat<T>().device(device) = grad->flat<T>().constant(T(0));
        }
        return;
      }
    }
    functor::DeformRoiPoolBackward<Device, T>()(
        device, g, context->input(0).flat<T>().data(), rois,
        context->input(2).flat<T>().data(), context->input(3).flat<T>().data(),
        output_grad.flat<T>().data(), grads[0]->flat<T>().data(), coordinate_grads[0],
        coordinate_grads[1]);
  }

 private:
  DeformRoiPoolAttrs attrs_;
  bool coordinate_gradients_ = true;
};

#define DCN_REGISTER_CPU(T)                                                             \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name("DcnDeformRoiPool").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      DeformRoiPoolOp<CPUDevice, T>);                                                   \
  REGISTER_KERNEL_BUILDER(Name("DcnDeformRoiPoolGrad")                                  \
                              .Device(::tensorflow::DEVICE_CPU)                         \
                              .TypeConstraint<T>("T"),                                  \
                          DeformRoiPoolGradOp<CPUDevice, T>);
DCN_CALL_FLOAT_TYPES(DCN_REGISTER_CPU)
#undef DCN_REGISTER_CPU

#if GOOGLE_CUDA
// The functors are specialised for the GPU in cuda/deform_roi_pool_gpu.cu.cc. The
// RoIs stay in host memory: CheckRois reads them before anything is launched. The
// kernels take RoIs of either type (attribute Troi) and convert them as needed.
using GPUDevice = Eigen::GpuDevice;
#define DCN_REGISTER_GPU(T)                                     \
  REGISTER_KERNEL_BUILDER(Name("DcnDeformRoiPool")              \
                              .Device(::tensorflow::DEVICE_GPU) \
                              .HostMemory("rois")               \
                              .TypeConstraint<T>("T"),          \
                          DeformRoiPoolOp<GPUDevice, T>);       \
  REGISTER_KERNEL_BUILDER(Name("DcnDeformRoiPoolGrad")          \
                              .Device(::tensorflow::DEVICE_GPU) \
                              .HostMemory("rois")               \
                              .TypeConstraint<T>("T"),          \
                          DeformRoiPoolGradOp<GPUDevice, T>);
DCN_CALL_FLOAT_TYPES(DCN_REGISTER_GPU)
#undef DCN_REGISTER_GPU
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace keras_dcn
