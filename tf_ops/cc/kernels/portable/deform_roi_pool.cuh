// CUDA kernels of DeformRoiPool, forward and gradients. No TensorFlow here.
//
// The math and layouts are those of cpu/deform_roi_pool_cpu.cc (see deform_roi_pool.h
// and roi_sampling.h):
//   * Forward: one work item per (bin, channel) sums the bin's bilinear samples of
//     its channel; consecutive items read consecutive channels (channels last).
//   * Offset and mask gradients: one work item per bin, a sum over its samples and
//     channels.
//   * Features gradient: one work item per (bin, channel) adds its share to the four
//     neighbours of every sample with atomic adds (bins of overlapping RoIs share
//     pixels). Half types sum in a float buffer that is converted at the end.
// Every work item recomputes its bin's geometry, which is cheap next to the reads.
//
// Entry points, for T = __half, __nv_bfloat16, float, double under nvcc (float and
// double with a host compiler):
//   DeformRoiPoolForward<T>(exec, geometry, features, rois, offsets, mask, output)
//   DeformRoiPoolBackwardScratchBytes<T>(geometry)
//   DeformRoiPoolBackward<T>(exec, geometry, features, rois, offsets, mask,
//                            output_grad, features_grad, offsets_grad, mask_grad,
//                            scratch)
// with every pointer, `rois` included, on the executor's device (gpu_utils.cuh);
// `rois` are RoiCoordinate<T> (deform_roi_pool.h): float, or double for double.
// The RoIs must have passed the op kernel's checks (batch index in range, finite).
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_ROI_POOL_CUH_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_ROI_POOL_CUH_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>

#include "tf_ops/cc/kernels/portable/deform_roi_pool.h"
#include "tf_ops/cc/kernels/portable/gpu_utils.cuh"
#include "tf_ops/cc/kernels/portable/roi_sampling.h"

namespace keras_dcn {
namespace gpu {
namespace roi_pool_internal {

// The geometry in the kernels' index type, with the attributes.
template <typename Index>
struct Dims {
  Index height, width, channels, image_size;
  Index out_height, out_width, bins_per_roi;
  int64_t sampling_ratio;
  double spatial_scale;
  double gamma;
  bool aligned;
};

template <typename Index>
Dims<Index> MakeDims(const DeformRoiPoolGeometry& g) {
  Dims<Index> d;
  d.height = static_cast<Index>(g.height);
  d.width = static_cast<Index>(g.width);
  d.channels = static_cast<Index>(g.channels);
  d.image_size = static_cast<Index>(g.image_size());
  d.out_height = static_cast<Index>(g.out_height);
  d.out_width = static_cast<Index>(g.out_width);
  d.bins_per_roi = static_cast<Index>(g.bins_per_roi());
  d.sampling_ratio = g.sampling_ratio;
  d.spatial_scale = g.spatial_scale;
  d.gamma = g.gamma;
  d.aligned = g.aligned;
  return d;
}

// Where a bin's samples lie, as LocateBin of the CPU kernels computes it; the
// samples themselves are set up on the fly with SetupAxisSample.
template <typename Acc>
struct Bin {
  int64_t image;
  Acc roi_height;
  Acc roi_width;
  Acc inv_count;  // 1 / (grid_h * grid_w)
  int64_t grid_h;
  int64_t grid_w;
  BinOrigin<Acc> origin;
};

template <typename T, typename Acc, typename Index>
DCN_HOST_DEVICE Bin<Acc> LocateBin(const Dims<Index>& d, const Acc* rois,
                                   const T* offsets, Index bin) {
  const Index r = bin / d.bins_per_roi;
  const Index in_roi = bin - r * d.bins_per_roi;
  const Index ph = in_roi / d.out_width;
  const Index pw = in_roi - ph * d.out_width;
  const Acc* roi = rois + static_cast<int64_t>(r) * 5;
  const RoiBox<Acc> box =
      RoiBoxOnMap<Acc>(roi, static_cast<Acc>(d.spatial_scale), d.aligned);
  Bin<Acc> b;
  b.image = static_cast<int64_t>(roi[0]);
  b.roi_height = box.height;
  b.roi_width = box.width;
  b.grid_h = SamplesPerBin<Acc>(box.height, d.out_height, d.sampling_ratio);
  b.grid_w = SamplesPerBin<Acc>(box.width, d.out_width, d.sampling_ratio);
  b.inv_count = Acc(1) / static_cast<Acc>(b.grid_h * b.grid_w);
  b.origin =
      ShiftedBin<Acc>(box, ph, pw, d.out_height, d.out_width, static_cast<Acc>(d.gamma),
                      Convert<Acc>(offsets[bin * 2]), Convert<Acc>(offsets[bin * 2 + 1]));
  return b;
}

template <typename Acc>
DCN_HOST_DEVICE void SampleRow(const Bin<Acc>& b, int64_t i, int64_t height,
                               AxisSample<Acc>* s) {
  SetupAxisSample<Acc>(SampleCoordinate<Acc>(b.origin.y, b.origin.height, i, b.grid_h),
                       height, s);
}

template <typename Acc>
DCN_HOST_DEVICE void SampleColumn(const Bin<Acc>& b, int64_t i, int64_t width,
                                  AxisSample<Acc>* s) {
  SetupAxisSample<Acc>(SampleCoordinate<Acc>(b.origin.x, b.origin.width, i, b.grid_w),
                       width, s);
}

// output[bin, c] = mask[bin] * mean of the bin's samples of channel c.
template <typename T, typename Acc, typename Index>
struct PoolBins {
  Dims<Index> d;
  const T* features;
  const Acc* rois;
  const T* offsets;
  const T* mask;
  T* output;

  DCN_HOST_DEVICE void operator()(Index index) const {
    const Index bin = index / d.channels;
    const Index c = index - bin * d.channels;
    const Bin<Acc> b = LocateBin<T, Acc, Index>(d, rois, offsets, bin);
    const T* image = features + b.image * d.image_size + c;
    Acc acc = Acc(0);
    for (int64_t iy = 0; iy < b.grid_h; ++iy) {
      AxisSample<Acc> y;
      SampleRow(b, iy, d.height, &y);
      if (!y.inside) continue;
      const T* row0 = image + y.index[0] * d.width * d.channels;
      const T* row1 = image + y.index[1] * d.width * d.channels;
      for (int64_t ix = 0; ix < b.grid_w; ++ix) {
        AxisSample<Acc> x;
        SampleColumn(b, ix, d.width, &x);
        if (!x.inside) continue;
        const int64_t col0 = x.index[0] * d.channels;
        const int64_t col1 = x.index[1] * d.channels;
        acc += y.weight[0] * x.weight[0] * Convert<Acc>(row0[col0]) +
               y.weight[0] * x.weight[1] * Convert<Acc>(row0[col1]) +
               y.weight[1] * x.weight[0] * Convert<Acc>(row1[col0]) +
               y.weight[1] * x.weight[1] * Convert<Acc>(row1[col1]);
      }
    }
    output[index] = Convert<T>(acc * (Convert<Acc>(mask[bin]) * b.inv_count));
  }
};

// Offset and mask gradients of one bin.
template <typename T, typename Acc, typename Index>
struct CoordinateGradients {
  Dims<Index> d;
  const T* features;
  const Acc* rois;
  const T* offsets;
  const T* mask;
  const T* output_grad;
  T* offsets_grad;
  T* mask_grad;

  DCN_HOST_DEVICE void operator()(Index bin) const {
    const Bin<Acc> b = LocateBin<T, Acc, Index>(d, rois, offsets, bin);
    const T* image = features + b.image * d.image_size;
    const T* grad = output_grad + bin * d.channels;
    // value: d loss / d (sample mean); grad_y, grad_x: its derivatives with respect
    // to the bin's vertical and horizontal shift.
    Acc value = Acc(0), grad_y = Acc(0), grad_x = Acc(0);
    for (int64_t iy = 0; iy < b.grid_h; ++iy) {
      AxisSample<Acc> y;
      SampleRow(b, iy, d.height, &y);
      if (!y.inside) continue;
      for (int64_t ix = 0; ix < b.grid_w; ++ix) {
        AxisSample<Acc> x;
        SampleColumn(b, ix, d.width, &x);
        if (!x.inside) continue;
        for (int a = 0; a < 2; ++a) {
          for (int c2 = 0; c2 < 2; ++c2) {
            const T* p = image + (y.index[a] * d.width + x.index[c2]) * d.channels;
            Acc dot = Acc(0);
            for (Index c = 0; c < d.channels; ++c) {
              dot += Convert<Acc>(grad[c]) * Convert<Acc>(p[c]);
            }
            value += y.weight[a] * x.weight[c2] * dot;
            grad_y += y.slope[a] * x.weight[c2] * dot;
            grad_x += y.weight[a] * x.slope[c2] * dot;
          }
        }
      }
    }
    const Acc gamma = static_cast<Acc>(d.gamma);
    const Acc m = Convert<Acc>(mask[bin]) * b.inv_count;
    mask_grad[bin] = Convert<T>(value * b.inv_count);
    offsets_grad[bin * 2] = Convert<T>(m * gamma * b.roi_height * grad_y);
    offsets_grad[bin * 2 + 1] = Convert<T>(m * gamma * b.roi_width * grad_x);
  }
};

// Adds output_grad[bin, c] times the bin's sample weights to the features gradient.
template <typename T, typename Acc, typename Index>
struct FeaturesGradient {
  Dims<Index> d;
  const Acc* rois;
  const T* offsets;
  const T* mask;
  const T* output_grad;
  Acc* features_grad;

  DCN_HOST_DEVICE void operator()(Index index) const {
    const Index bin = index / d.channels;
    const Index c = index - bin * d.channels;
    const Acc m = Convert<Acc>(mask[bin]);
    if (m == Acc(0)) return;  // the bin reads nothing, as on the CPU
    const Acc g = Convert<Acc>(output_grad[index]);
    if (g == Acc(0)) return;
    const Bin<Acc> b = LocateBin<T, Acc, Index>(d, rois, offsets, bin);
    const Acc scale = m * b.inv_count;
    Acc* image_grad = features_grad + b.image * d.image_size + c;
    for (int64_t iy = 0; iy < b.grid_h; ++iy) {
      AxisSample<Acc> y;
      SampleRow(b, iy, d.height, &y);
      if (!y.inside) continue;
      for (int64_t ix = 0; ix < b.grid_w; ++ix) {
        AxisSample<Acc> x;
        SampleColumn(b, ix, d.width, &x);
        if (!x.inside) continue;
        for (int a = 0; a < 2; ++a) {
          for (int c2 = 0; c2 < 2; ++c2) {
            const Acc w = y.weight[a] * x.weight[c2] * scale;
            AtomicAdd(image_grad + (y.index[a] * d.width + x.index[c2]) * d.channels,
                      w * g);
          }
        }
      }
    }
  }
};

// The largest size any kernel indexes: decides between 32- and 64-bit indices.
inline int64_t LargestIndex(const DeformRoiPoolGeometry& g) {
  const int64_t sizes[] = {g.batch * g.image_size(), g.num_bins() * g.channels,
                           g.num_bins() * 2};
  return *std::max_element(std::begin(sizes), std::end(sizes));
}

template <typename T>
struct BackwardScratch {
  using Acc = typename AccumulatorOf<T>::type;
  Acc* features_grad = nullptr;  // narrow types only

  BackwardScratch(const DeformRoiPoolGeometry& g, ScratchLayout* layout) {
    if (!kIsAccumulator<T>) features_grad = layout->Take<Acc>(g.batch * g.image_size());
  }
};

template <typename Index, typename T, typename Exec>
void Forward(const Exec& exec, const DeformRoiPoolGeometry& g, const T* features,
             const RoiCoordinate<T>* rois, const T* offsets, const T* mask, T* output) {
  using Acc = typename AccumulatorOf<T>::type;
  PoolBins<T, Acc, Index> pool;
  pool.d = MakeDims<Index>(g);
  pool.features = features;
  pool.rois = rois;
  pool.offsets = offsets;
  pool.mask = mask;
  pool.output = output;
  exec.template ForEach<Index>(g.num_bins() * g.channels, pool);
}

template <typename Index, typename T, typename Exec>
void Backward(const Exec& exec, const DeformRoiPoolGeometry& g, const T* features,
              const RoiCoordinate<T>* rois, const T* offsets, const T* mask,
              const T* output_grad, T* features_grad, T* offsets_grad, T* mask_grad,
              void* scratch) {
  using Acc = typename AccumulatorOf<T>::type;
  ScratchLayout layout(scratch);
  const BackwardScratch<T> buffers(g, &layout);
  const Dims<Index> d = MakeDims<Index>(g);
  const int64_t features_size = g.batch * g.image_size();

  CoordinateGradients<T, Acc, Index> coordinates;
  coordinates.d = d;
  coordinates.features = features;
  coordinates.rois = rois;
  coordinates.offsets = offsets;
  coordinates.mask = mask;
  coordinates.output_grad = output_grad;
  coordinates.offsets_grad = offsets_grad;
  coordinates.mask_grad = mask_grad;
  exec.template ForEach<Index>(g.num_bins(), coordinates);

  Acc* features_sum;
  if constexpr (kIsAccumulator<T>) {
    features_sum = features_grad;
  } else {
    features_sum = buffers.features_grad;
  }
  exec.Zero(features_sum, features_size * sizeof(Acc));
  FeaturesGradient<T, Acc, Index> scatter;
  scatter.d = d;
  scatter.rois = rois;
  scatter.offsets = offsets;
  scatter.mask = mask;
  scatter.output_grad = output_grad;
  scatter.features_grad = features_sum;
  exec.template ForEach<Index>(g.num_bins() * g.channels, scatter);
  if constexpr (!kIsAccumulator<T>) {
    exec.template ForEach<Index>(
        features_size, StoreConverted<T, Acc, Index>{features_sum, features_grad});
  }
}

}  // namespace roi_pool_internal

template <typename T>
size_t DeformRoiPoolBackwardScratchBytes(const DeformRoiPoolGeometry& g) {
  ScratchLayout layout;
  roi_pool_internal::BackwardScratch<T> buffers(g, &layout);
  return layout.size();
}

template <typename T, typename Exec>
void DeformRoiPoolForward(const Exec& exec, const DeformRoiPoolGeometry& g,
                          const T* features, const RoiCoordinate<T>* rois,
                          const T* offsets, const T* mask, T* output) {
  namespace internal = roi_pool_internal;
  if (exec.NeedsWideIndex(internal::LargestIndex(g))) {
    internal::Forward<int64_t>(exec, g, features, rois, offsets, mask, output);
  } else {
    internal::Forward<int32_t>(exec, g, features, rois, offsets, mask, output);
  }
}

template <typename T, typename Exec>
void DeformRoiPoolBackward(const Exec& exec, const DeformRoiPoolGeometry& g,
                           const T* features, const RoiCoordinate<T>* rois,
                           const T* offsets, const T* mask, const T* output_grad,
                           T* features_grad, T* offsets_grad, T* mask_grad,
                           void* scratch) {
  namespace internal = roi_pool_internal;
  if (exec.NeedsWideIndex(internal::LargestIndex(g))) {
    internal::Backward<int64_t>(exec, g, features, rois, offsets, mask, output_grad,
                                features_grad, offsets_grad, mask_grad, scratch);
  } else {
    internal::Backward<int32_t>(exec, g, features, rois, offsets, mask, output_grad,
                                features_grad, offsets_grad, mask_grad, scratch);
  }
}

}  // namespace gpu
}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_ROI_POOL_CUH_
