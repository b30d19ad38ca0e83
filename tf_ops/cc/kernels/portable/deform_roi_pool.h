// The seam between the DeformRoiPool op kernels and the math that runs them.
//
// Layouts (all row-major, channels last):
//   features  [batch, height, width, channels]
//   rois      [num_rois, 5] RoiCoordinate<T>: (batch_index, x1, y1, x2, y2) in image
//             pixels; float32, or float64 for float64 features
//   offsets   [num_rois, out_height, out_width, 2]: (dy, dx), in units of the RoI
//             height / width (scaled by gamma)
//   mask      [num_rois, out_height, out_width, 1]
//   output    [num_rois, out_height, out_width, channels]
//
// Output bin (r, ph, pw) is the mean of grid_h x grid_w bilinear samples of the
// features of image rois[r, 0], taken in the bin after moving it by the offsets,
// times mask[r, ph, pw]. The geometry lives in roi_sampling.h.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_ROI_POOL_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_ROI_POOL_H_

#include <cstdint>

#include "tf_ops/cc/kernels/portable/accumulator.h"

namespace keras_dcn {

// The type the kernels read RoI corners in, that of the arithmetic: float32 for the
// half types and float32, float64 for float64 (so float64 results are exact).
template <typename T>
using RoiCoordinate = typename AccumulatorOf<T>::type;

// At most this many sample points per bin (grid_h * grid_w). The op kernel rejects
// an explicit sampling_ratio or an adaptive grid (sampling_ratio <= 0) above it, so
// that a huge box fails with an error instead of overflowing or running for hours.
constexpr int64_t kMaxSamplesPerBin = int64_t{1} << 24;
constexpr int64_t kMaxSamplingRatio = int64_t{1} << 12;  // its square root

// Every size and attribute the math needs, validated by the op kernel (including
// every RoI: a batch index in [0, batch), finite corners with x1 <= x2 and
// y1 <= y2, and a sample grid within kMaxSamplesPerBin) before any functor runs.
struct DeformRoiPoolGeometry {
  int64_t batch = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  int64_t num_rois = 0;
  int64_t out_height = 0;
  int64_t out_width = 0;
  int64_t sampling_ratio = 0;  // <= 0: adaptive, ceil(roi size / bins) per axis
  // The float32 attributes as written in decimal (DecimalValue in
  // deform_roi_pool_attrs.h); converted to float they are the attributes again.
  double spatial_scale = 1.0;
  double gamma = 0.1;
  bool aligned = true;

  int64_t bins_per_roi() const { return out_height * out_width; }
  int64_t num_bins() const { return num_rois * bins_per_roi(); }
  int64_t image_size() const { return height * width * channels; }
};

namespace functor {

// output = DeformRoiPool(features, rois, offsets, mask).
template <typename Device, typename T>
struct DeformRoiPoolForward {
  void operator()(const Device& device, const DeformRoiPoolGeometry& geometry,
                  const T* features, const RoiCoordinate<T>* rois, const T* offsets,
                  const T* mask, T* output);
};

// Gradients of the loss with respect to features, offsets and mask, given its
// gradient with respect to the output. All outputs are fully overwritten. The CPU
// kernel takes offsets_grad and mask_grad both null to skip them.
template <typename Device, typename T>
struct DeformRoiPoolBackward {
  void operator()(const Device& device, const DeformRoiPoolGeometry& geometry,
                  const T* features, const RoiCoordinate<T>* rois, const T* offsets,
                  const T* mask, const T* output_grad, T* features_grad, T* offsets_grad,
                  T* mask_grad);
};

}  // namespace functor
}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_ROI_POOL_H_
