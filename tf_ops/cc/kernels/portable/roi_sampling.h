// RoI geometry and RoIAlign-style bilinear sampling, shared by the CPU and CUDA
// kernels of the deformable RoI pooling ops.
//
// This header does not depend on TensorFlow: it is plain C++ that nvcc can compile
// for the device as well as the host.
//
// A RoI `(batch_index, x1, y1, x2, y2)` in image pixels becomes a box on the feature
// map (see RoiBoxOnMap). The box is cut into out_height x out_width bins; bin
// (ph, pw) is moved by (gamma * box.height * dy, gamma * box.width * dx) and read at
// grid_h x grid_w points. Because a bin's sample points form a regular grid, the
// bilinear weights factor into a vertical and a horizontal part: sample (iy, ix)
// reads
//   value = sum_{a, b in {0, 1}} ys[iy].weight[a] * xs[ix].weight[b]
//                                * map[ys[iy].index[a], xs[ix].index[b]]
// where ys / xs are AxisSample values of the bin's rows and columns.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_ROI_SAMPLING_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_ROI_SAMPLING_H_

#include <cmath>
#include <cstdint>

#include "tf_ops/cc/kernels/portable/bilinear.h"  // DCN_HOST_DEVICE

namespace keras_dcn {

// A RoI on the feature map: its top-left corner and its size, in feature pixels.
template <typename Acc>
struct RoiBox {
  Acc y;
  Acc x;
  Acc height;
  Acc width;
};

// The box of the RoI row `roi` ([batch_index, x1, y1, x2, y2], image pixels) on a
// feature map `spatial_scale` times the image size. With `aligned` the corners are
// moved by -0.5 so that pixel centres line up (torchvision's roi_align(aligned=True),
// mmcv); without it the size is raised to at least one feature pixel (the original
// RoIAlign). The size is x2 - x1 scaled, whatever `aligned` says.
template <typename Acc, typename R>
DCN_HOST_DEVICE RoiBox<Acc> RoiBoxOnMap(const R* roi, Acc spatial_scale, bool aligned) {
  const Acc shift = aligned ? Acc(0.5) : Acc(0);
  RoiBox<Acc> box;
  const Acc x1 = static_cast<Acc>(roi[1]) * spatial_scale;
  const Acc y1 = static_cast<Acc>(roi[2]) * spatial_scale;
  const Acc x2 = static_cast<Acc>(roi[3]) * spatial_scale;
  const Acc y2 = static_cast<Acc>(roi[4]) * spatial_scale;
  box.x = x1 - shift;
  box.y = y1 - shift;
  box.width = x2 - x1;
  box.height = y2 - y1;
  if (!aligned) {
    if (box.width < Acc(1)) box.width = Acc(1);
    if (box.height < Acc(1)) box.height = Acc(1);
  }
  return box;
}

// Sample points per bin along one axis: `sampling_ratio` when positive, otherwise
// ceil(extent / bins), the adaptive rule of RoIAlign. Never less than one, so a box
// of size zero is read at its single point rather than dropped. The op kernel
// rejects boxes whose grid would exceed kMaxSamplesPerBin (deform_roi_pool.h), so
// the result always fits.
template <typename Acc>
DCN_HOST_DEVICE int64_t SamplesPerBin(Acc extent, int64_t bins, int64_t sampling_ratio) {
  if (sampling_ratio > 0) return sampling_ratio;
  const Acc n = ceil(extent / static_cast<Acc>(bins));
  return n < Acc(1) ? int64_t{1} : static_cast<int64_t>(n);
}

// The bin-relative position of sample `i` of `grid` in a bin of length `bin`:
// (i + 0.5) * bin / grid, measured from the bin's (shifted) start `bin_start`.
template <typename Acc>
DCN_HOST_DEVICE Acc SampleCoordinate(Acc bin_start, Acc bin, int64_t i, int64_t grid) {
  return bin_start + (static_cast<Acc>(i) + Acc(0.5)) * bin / static_cast<Acc>(grid);
}

// The vertical (or horizontal) half of a RoIAlign bilinear read at coordinate `c` of
// an axis of `size` pixels:
//   * `inside` is false when c < -1, c > size, c is not a number or size is 0: the
//     sample reads 0 and gets no gradient;
//   * otherwise c is raised to 0 when negative; when floor(c) >= size - 1 both
//     neighbours are the last pixel and c is set to it (RoIAlign's clamping);
//   * weight[a] weighs pixel index[a]; slope[a] = d weight[a] / d c, which is 0
//     where c was clamped (the derivative of the clamped formula) and -1 / +1
//     otherwise (the floor-based, right-hand derivative at integers).
template <typename Acc>
struct AxisSample {
  bool inside;
  int64_t index[2];
  Acc weight[2];
  Acc slope[2];
};

template <typename Acc>
DCN_HOST_DEVICE void SetupAxisSample(Acc c, int64_t size, AxisSample<Acc>* s) {
  // Written so that NaN fails the test.
  s->inside = size > 0 && c >= Acc(-1) && c <= static_cast<Acc>(size);
  if (!s->inside) {
    s->index[0] = s->index[1] = 0;
    s->weight[0] = s->weight[1] = Acc(0);
    s->slope[0] = s->slope[1] = Acc(0);
    return;
  }
  bool clamped = false;
  if (c <= Acc(0)) {
    c = Acc(0);
    clamped = true;
  }
  int64_t low = static_cast<int64_t>(floor(c));
  int64_t high = low + 1;
  if (low >= size - 1) {
    low = high = size - 1;
    c = static_cast<Acc>(low);
    clamped = true;
  }
  const Acc frac = c - static_cast<Acc>(low);
  s->index[0] = low;
  s->index[1] = high;
  s->weight[0] = Acc(1) - frac;
  s->weight[1] = frac;
  s->slope[0] = clamped ? Acc(0) : Acc(-1);
  s->slope[1] = clamped ? Acc(0) : Acc(1);
}

// Where bin (ph, pw) of a box starts once moved by its normalised offset (dy, dx).
template <typename Acc>
struct BinOrigin {
  Acc y;
  Acc x;
  Acc height;  // of the bin
  Acc width;
};

template <typename Acc>
DCN_HOST_DEVICE BinOrigin<Acc> ShiftedBin(const RoiBox<Acc>& box, int64_t ph, int64_t pw,
                                          int64_t out_height, int64_t out_width,
                                          Acc gamma, Acc dy, Acc dx) {
  BinOrigin<Acc> bin;
  bin.height = box.height / static_cast<Acc>(out_height);
  bin.width = box.width / static_cast<Acc>(out_width);
  bin.y = box.y + static_cast<Acc>(ph) * bin.height + gamma * box.height * dy;
  bin.x = box.x + static_cast<Acc>(pw) * bin.width + gamma * box.width * dx;
  return bin;
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_ROI_SAMPLING_H_
