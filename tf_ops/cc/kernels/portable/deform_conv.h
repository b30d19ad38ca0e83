// The seam between the DeformConv2D op kernels and the math that runs them.
//
// Layouts (all row-major, channels last):
//   input     [batch, in_height, in_width, in_channels]
//   offsets   [batch, out_height, out_width, deformable_groups * kh * kw * 2]
//             channel ((g * kh + i) * kw + j) * 2 + {0: dy, 1: dx}
//   mask      [batch, out_height, out_width, deformable_groups * kh * kw]
//   kernel    [kh, kw, in_channels / groups, filters]   (Keras' Conv2D layout)
//   bias      [filters]
//   output    [batch, out_height, out_width, filters]
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_CONV_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_CONV_H_

#include <algorithm>
#include <cstdint>

namespace keras_dcn {

// Every size the math needs, validated by the op kernel before any functor runs.
struct DeformConvGeometry {
  int64_t batch = 0;
  int64_t in_height = 0;
  int64_t in_width = 0;
  int64_t in_channels = 0;
  int64_t out_height = 0;
  int64_t out_width = 0;
  int64_t filters = 0;
  int64_t kernel_h = 0;
  int64_t kernel_w = 0;
  int64_t stride_h = 1;
  int64_t stride_w = 1;
  int64_t dilation_h = 1;
  int64_t dilation_w = 1;
  int64_t pad_top = 0;
  int64_t pad_left = 0;
  int64_t groups = 1;
  int64_t deformable_groups = 1;

  int64_t taps() const { return kernel_h * kernel_w; }
  int64_t out_pixels_per_image() const { return out_height * out_width; }
  int64_t channels_per_group() const { return in_channels / groups; }
  int64_t filters_per_group() const { return filters / groups; }
  int64_t channels_per_deformable_group() const {
    return in_channels / deformable_groups;
  }
};

enum class Padding { kValid, kSame, kExplicit };

// Bound on kernel sizes, strides, dilations and paddings, so that no size
// computation can overflow 64 bits.
constexpr int64_t kMaxConvSize = int64_t{1} << 30;

// Output length and leading padding of one spatial dimension, as TensorFlow's conv
// computes them: VALID pads nothing, SAME pads to ceil(in / stride) outputs with the
// odd pixel at the end, EXPLICIT uses (pad_before, pad_after). Returns false when
// the dilated kernel does not fit in the padded input.
inline bool ConvOutputSize(int64_t in, int64_t kernel, int64_t stride, int64_t dilation,
                           Padding padding, int64_t pad_before, int64_t pad_after,
                           int64_t* out, int64_t* leading_pad) {
  const int64_t effective_kernel = (kernel - 1) * dilation + 1;
  if (padding == Padding::kValid) {
    pad_before = pad_after = 0;
  } else if (padding == Padding::kSame) {
    const int64_t target = (in + stride - 1) / stride;
    const int64_t total =
        std::max<int64_t>(0, (target - 1) * stride + effective_kernel - in);
    *out = target;
    *leading_pad = total / 2;
    return true;
  }
  const int64_t padded = in + pad_before + pad_after;
  if (padded < effective_kernel) return false;
  *out = (padded - effective_kernel) / stride + 1;
  *leading_pad = pad_before;
  return true;
}

namespace functor {

// output = DeformConv2D(input, offsets, mask, kernel) + bias.
template <typename Device, typename T>
struct DeformConv2DForward {
  void operator()(const Device& device, const DeformConvGeometry& geometry,
                  const T* input, const T* offsets, const T* mask, const T* kernel,
                  const T* bias, T* output);
};

// Gradients of the loss with respect to every input, given its gradient with
// respect to the output. All outputs are fully overwritten. Null input_grad,
// offsets_grad and mask_grad skip those three gradients, null kernel_grad and
// bias_grad these two (each set is null together or not at all).
template <typename Device, typename T>
struct DeformConv2DBackward {
  void operator()(const Device& device, const DeformConvGeometry& geometry,
                  const T* input, const T* offsets, const T* mask, const T* kernel,
                  const T* output_grad, T* input_grad, T* offsets_grad, T* mask_grad,
                  T* kernel_grad, T* bias_grad);
};

}  // namespace functor
}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_CONV_H_
