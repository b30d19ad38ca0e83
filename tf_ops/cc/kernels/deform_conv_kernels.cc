// Op kernels of DcnDeformConv2D and DcnDeformConv2DGrad: validate the inputs,
// allocate the outputs and hand the work to the device functors.
#define EIGEN_USE_THREADS

#include <type_traits>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tf_ops/cc/kernels/deform_conv_attrs.h"
#include "tf_ops/cc/kernels/float_types.h"
#include "tf_ops/cc/kernels/portable/deform_conv.h"
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

// Checks the shapes of input, offsets, mask and kernel against each other and the
// attributes, fills `g` and the shape of the output.
absl::Status MakeGeometry(const DeformConvAttrs& attrs, const TensorShape& input,
                          const TensorShape& offsets, const TensorShape& mask,
                          const TensorShape& kernel, DeformConvGeometry* g,
                          TensorShape* output_shape) {
  if (input.dims() != 4) {
    return ShapeError("input", "[batch, height, width, channels]", input);
  }
  if (kernel.dims() != 4) {
    return ShapeError("kernel", "[kh, kw, in_channels / groups, filters]", kernel);
  }
  g->batch = input.dim_size(0);
  g->in_height = input.dim_size(1);
  g->in_width = input.dim_size(2);
  g->in_channels = input.dim_size(3);
  g->kernel_h = kernel.dim_size(0);
  g->kernel_w = kernel.dim_size(1);
  g->filters = kernel.dim_size(3);
  g->stride_h = attrs.strides[0];
  g->stride_w = attrs.strides[1];
  g->dilation_h = attrs.dilations[0];
  g->dilation_w = attrs.dilations[1];
  g->groups = attrs.groups;
  g->deformable_groups = attrs.deformable_groups;

  if (g->in_channels % g->groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat("input channels (", g->in_channels,
                                                   ") must be divisible by groups (",
                                                   g->groups, ")"));
  }
  if (g->in_channels % g->deformable_groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input channels (", g->in_channels, ") must be divisible by deformable_groups (",
        g->deformable_groups, ")"));
  }
  if (g->in_channels == 0) {
    return ShapeError("input", "[batch, height, width, channels] with channels > 0",
                      input);
  }
  if (g->kernel_h < 1 || g->kernel_w < 1 || g->kernel_h > kMaxConvSize ||
      g->kernel_w > kMaxConvSize || kernel.dim_size(2) != g->in_channels / g->groups ||
      g->filters % g->groups != 0) {
    return ShapeError(
        "kernel",
        absl::StrCat("[1 <= kh <= 2^30, 1 <= kw <= 2^30, ", g->in_channels / g->groups,
                     " (in_channels / groups), filters divisible by groups (", g->groups,
                     ")]"),
        kernel);
  }

  if (2.0 * g->deformable_groups * g->kernel_h * g->kernel_w > 0x1p62) {
    return ShapeError("kernel", "with 2 * deformable_groups * kh * kw < 2^62", kernel);
  }

  const bool explicit_pad = attrs.padding == Padding::kExplicit;
  const int64_t in_sizes[2] = {g->in_height, g->in_width};
  const int64_t kernel_sizes[2] = {g->kernel_h, g->kernel_w};
  int64_t out_sizes[2], pads[2];
  for (int axis = 0; axis < 2; ++axis) {
    if (!ConvOutputSize(in_sizes[axis], kernel_sizes[axis], attrs.strides[axis],
                        attrs.dilations[axis], attrs.padding,
                        explicit_pad ? attrs.explicit_paddings[2 * axis] : 0,
                        explicit_pad ? attrs.explicit_paddings[2 * axis + 1] : 0,
                        &out_sizes[axis], &pads[axis])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the dilated kernel (", (kernel_sizes[axis] - 1) * attrs.dilations[axis] + 1,
          ") is larger than the padded input ", axis == 0 ? "height" : "width",
          " (input shape ", input.DebugString(), ")"));
    }
  }
  g->out_height = out_sizes[0];
  g->out_width = out_sizes[1];
  g->pad_top = pads[0];
  g->pad_left = pads[1];

  const int64_t taps = g->deformable_groups * g->taps();
  TensorShape expected_offsets, expected_mask;
  TF_RETURN_IF_ERROR(BuildShape(
      "offsets", {g->batch, g->out_height, g->out_width, 2 * taps}, &expected_offsets));
  TF_RETURN_IF_ERROR(
      BuildShape("mask", {g->batch, g->out_height, g->out_width, taps}, &expected_mask));
  TF_RETURN_IF_ERROR(BuildShape(
      "output", {g->batch, g->out_height, g->out_width, g->filters}, output_shape));
  if (offsets != expected_offsets) {
    return ShapeError("offsets",
                      absl::StrCat(expected_offsets.DebugString(),
                                   " ([batch, out_height, out_width, 2 * "
                                   "deformable_groups * kh * kw])"),
                      offsets);
  }
  if (mask != expected_mask) {
    return ShapeError("mask",
                      absl::StrCat(expected_mask.DebugString(),
                                   " ([batch, out_height, out_width, "
                                   "deformable_groups * kh * kw])"),
                      mask);
  }
  return absl::OkStatus();
}

template <typename Device, typename T>
class DeformConv2DOp : public OpKernel {
 public:
  explicit DeformConv2DOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, attrs_.Read(context));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    const Tensor& offsets = context->input(1);
    const Tensor& mask = context->input(2);
    const Tensor& kernel = context->input(3);
    const Tensor& bias = context->input(4);
    DeformConvGeometry g;
    TensorShape output_shape;
    OP_REQUIRES_OK(context,
                   MakeGeometry(attrs_, input.shape(), offsets.shape(), mask.shape(),
                                kernel.shape(), &g, &output_shape));
    OP_REQUIRES(
        context, bias.shape() == TensorShape({g.filters}),
        ShapeError("bias", absl::StrCat("[", g.filters, "] ([filters])"), bias.shape()));

    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, output_shape, &output));
    if (output->NumElements() == 0) return;
    functor::DeformConv2DForward<Device, T>()(
        context->eigen_device<Device>(), g, input.flat<T>().data(),
        offsets.flat<T>().data(), mask.flat<T>().data(), kernel.flat<T>().data(),
        bias.flat<T>().data(), output->flat<T>().data());
  }

 private:
  DeformConvAttrs attrs_;
};

template <typename Device, typename T>
class DeformConv2DGradOp : public OpKernel {
 public:
  explicit DeformConv2DGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, attrs_.Read(context));
    OP_REQUIRES_OK(context, context->GetAttr("input_gradients", &input_gradients_));
    OP_REQUIRES_OK(context, context->GetAttr("kernel_gradients", &kernel_gradients_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    const Tensor& offsets = context->input(1);
    const Tensor& mask = context->input(2);
    const Tensor& kernel = context->input(3);
    const Tensor& output_grad = context->input(4);
    DeformConvGeometry g;
    TensorShape output_shape;
    OP_REQUIRES_OK(context,
                   MakeGeometry(attrs_, input.shape(), offsets.shape(), mask.shape(),
                                kernel.shape(), &g, &output_shape));
    OP_REQUIRES(
        context, output_grad.shape() == output_shape,
        ShapeError("output_grad", output_shape.DebugString(), output_grad.shape()));

    // A skipped half's outputs are empty, and the functors skip its work (null
    // targets).
    Tensor* grads[5];
    T* targets[5];
    const TensorShape shapes[5] = {input.shape(), offsets.shape(), mask.shape(),
                                   kernel.shape(), TensorShape({g.filters})};
    for (int i = 0; i < 5; ++i) {
      const bool wanted = i < 3 ? input_gradients_ : kernel_gradients_;
      OP_REQUIRES_OK(context, context->allocate_output(
                                  i, wanted ? shapes[i] : TensorShape({0}), &grads[i]));
      targets[i] = wanted ? grads[i]->flat<T>().data() : nullptr;
    }
    if (!input_gradients_ && !kernel_gradients_) return;
    // (The GPU functor handles empty tensors itself; these Eigen expressions are
    // evaluated on the CPU only.)
    if constexpr (std::is_same<Device, CPUDevice>::value) {
      if (output_grad.NumElements() == 0 || input.NumElements() == 0) {
        // Nothing reaches the output, or nothing is read from the input.
        const Device& device = context->eigen_device<Device>();
        for (int i = 0; i < 5; ++i) {
          grads[i]->flat<T>().device(device) = grads[i]->flat<T>().constant(T(0));
        }
        if (kernel_gradients_ && input.NumElements() == 0 &&
            output_grad.NumElements() > 0) {
          // The bias still reaches every output.
          grads[4]->flat<T>().device(device) =
              output_grad.flat_inner_dims<T, 2>().sum(Eigen::array<int, 1>{0});
        }
        return;
      }
    }
    functor::DeformConv2DBackward<Device, T>()(
        context->eigen_device<Device>(), g, input.flat<T>().data(),
        offsets.flat<T>().data(), mask.flat<T>().data(), kernel.flat<T>().data(),
        output_grad.flat<T>().data(), targets[0], targets[1], targets[2], targets[3],
        targets[4]);
  }

 private:
  DeformConvAttrs attrs_;
  bool input_gradients_ = true;
  bool kernel_gradients_ = true;
};

#define DCN_REGISTER_CPU(T)                                                            \
  REGISTER_KERNEL_BUILDER(                                                             \
      Name("DcnDeformConv2D").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      DeformConv2DOp<CPUDevice, T>);                                                   \
  REGISTER_KERNEL_BUILDER(Name("DcnDeformConv2DGrad")                                  \
                              .Device(::tensorflow::DEVICE_CPU)                        \
                              .TypeConstraint<T>("T"),                                 \
                          DeformConv2DGradOp<CPUDevice, T>);
DCN_CALL_FLOAT_TYPES(DCN_REGISTER_CPU)
#undef DCN_REGISTER_CPU

#if GOOGLE_CUDA
// The functors are specialised for the GPU in cuda/deform_conv_gpu.cu.cc.
using GPUDevice = Eigen::GpuDevice;
#define DCN_REGISTER_GPU(T)                                                            \
  REGISTER_KERNEL_BUILDER(                                                             \
      Name("DcnDeformConv2D").Device(::tensorflow::DEVICE_GPU).TypeConstraint<T>("T"), \
      DeformConv2DOp<GPUDevice, T>);                                                   \
  REGISTER_KERNEL_BUILDER(Name("DcnDeformConv2DGrad")                                  \
                              .Device(::tensorflow::DEVICE_GPU)                        \
                              .TypeConstraint<T>("T"),                                 \
                          DeformConv2DGradOp<GPUDevice, T>);
DCN_CALL_FLOAT_TYPES(DCN_REGISTER_GPU)
#undef DCN_REGISTER_GPU
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace keras_dcn
