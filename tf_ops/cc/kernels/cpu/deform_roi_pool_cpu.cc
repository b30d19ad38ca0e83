// CPU math of DeformRoiPool.
//
// Bilinear weights factor into rows and columns (portable/roi_sampling.h), and so
// does the sum over a bin's samples: with Wy[r] the summed vertical weights of the
// bin's samples on row r and Wx[c] those on column c,
//   sum over samples of value = sum_{r, c} Wy[r] * Wx[c] * features[r, c],
// and the same holds with the slopes in place of Wy (d/dy) or Wx (d/dx). So every
// bin first merges its samples into a short list of rows and one of columns, then
// touches each distinct pixel once: a bin narrower than a pixel, with all its
// samples between the same two rows and columns, reads 4 pixels instead of
// 4 * grid_h * grid_w.
//
// Forward and the offset / mask gradients: every output bin is independent, so the
// bins are split over the intra-op thread pool (parallel.h) and each bin loops over
// the channels, which are contiguous (channels last).
//
// Features gradient: bins of overlapping RoIs (and neighbouring samples of one bin)
// add into the same feature pixels, so it is split by (image, block of channels)
// instead: a task owns one channel block of one image, walks every bin of the RoIs of
// that image and adds only into its own channels. No two tasks write the same
// element, so there are no atomics, no locks and no per-thread copies of the
// gradient; the price is that every task recomputes the (cheap) sample geometry of
// the bins it walks.
//
// Half types are computed in float32 (RoIs included: RoiCoordinate), float64 in
// float64. Half-type features are converted to float a pixel (or a block of channels)
// at a time, by channel_loops.h's vector conversions where they run (accumulation.h's
// Convert), and their features gradient accumulates in a float buffer the size of the
// features.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <vector>

#include "Eigen/Core"
#include "tf_ops/cc/kernels/cpu/accumulation.h"
#include "tf_ops/cc/kernels/cpu/parallel.h"
#include "tf_ops/cc/kernels/float_types.h"
#include "tf_ops/cc/kernels/portable/deform_roi_pool.h"
#include "tf_ops/cc/kernels/portable/roi_sampling.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;

// Channels per features-gradient task: at least a cache line of float32.
constexpr int64_t kMinChannelBlock = 16;

// One row (or column) that a bin's samples read, with the summed weights and slopes
// (d weight / d coordinate) of those samples on it.
template <typename Acc>
struct AxisTap {
  int64_t index;
  Acc weight;
  Acc slope;
};

// The sample points of one bin, split into rows and columns (see
// portable/roi_sampling.h), and the rows and columns they read (see the file
// comment).
template <typename Acc>
struct BinSamples {
  int64_t image = 0;
  Acc roi_height = 0;  // of the RoI box, for the offset gradient
  Acc roi_width = 0;
  Acc inv_count = 0;  // 1 / (grid_h * grid_w)
  std::vector<AxisSample<Acc>> ys;
  std::vector<AxisSample<Acc>> xs;
  std::vector<AxisTap<Acc>> rows;
  std::vector<AxisTap<Acc>> cols;
};

// Sums the weights and slopes of the samples that are inside the map by pixel.
// The samples come in increasing order, so a pixel that repeats is one of the last
// two in `taps`; should one ever be missed it is merely listed twice, which
// changes nothing but the speed.
template <typename Acc>
void MergeAxis(const std::vector<AxisSample<Acc>>& samples,
               std::vector<AxisTap<Acc>>* taps) {
  taps->clear();
  for (const AxisSample<Acc>& sample : samples) {
    if (!sample.inside) continue;
    for (int a = 0; a < 2; ++a) {
      const size_t n = taps->size();
      AxisTap<Acc>* tap = nullptr;
      if (n > 0 && (*taps)[n - 1].index == sample.index[a]) {
        tap = &(*taps)[n - 1];
      } else if (n > 1 && (*taps)[n - 2].index == sample.index[a]) {
        tap = &(*taps)[n - 2];
      }
      if (tap == nullptr) {
        taps->push_back({sample.index[a], sample.weight[a], sample.slope[a]});
      } else {
        tap->weight += sample.weight[a];
        tap->slope += sample.slope[a];
      }
    }
  }
}

// Locates the samples of bin `bin` (flat index into [num_rois, oh, ow]).
template <typename T, typename Acc>
void LocateBin(const DeformRoiPoolGeometry& g, const Acc* rois, const T* offsets,
               int64_t bin, BinSamples<Acc>* s) {
  const int64_t per_roi = g.bins_per_roi();
  const int64_t r = bin / per_roi;
  const int64_t ph = (bin % per_roi) / g.out_width;
  const int64_t pw = bin % g.out_width;
  const Acc* roi = rois + r * 5;
  const RoiBox<Acc> box =
      RoiBoxOnMap<Acc>(roi, static_cast<Acc>(g.spatial_scale), g.aligned);
  const int64_t grid_h = SamplesPerBin<Acc>(box.height, g.out_height, g.sampling_ratio);
  const int64_t grid_w = SamplesPerBin<Acc>(box.width, g.out_width, g.sampling_ratio);
  const BinOrigin<Acc> origin = ShiftedBin<Acc>(
      box, ph, pw, g.out_height, g.out_width, static_cast<Acc>(g.gamma),
      static_cast<Acc>(offsets[bin * 2]), static_cast<Acc>(offsets[bin * 2 + 1]));
  s->image = static_cast<int64_t>(roi[0]);
  s->roi_height = box.height;
  s->roi_width = box.width;
  s->inv_count = Acc(1) / static_cast<Acc>(grid_h * grid_w);
  s->ys.resize(grid_h);
  s->xs.resize(grid_w);
  for (int64_t i = 0; i < grid_h; ++i) {
    SetupAxisSample<Acc>(SampleCoordinate<Acc>(origin.y, origin.height, i, grid_h),
                         g.height, &s->ys[i]);
  }
  for (int64_t i = 0; i < grid_w; ++i) {
    SetupAxisSample<Acc>(SampleCoordinate<Acc>(origin.x, origin.width, i, grid_w),
                         g.width, &s->xs[i]);
  }
  MergeAxis(s->ys, &s->rows);
  MergeAxis(s->xs, &s->cols);
}

// Average number of samples per bin over all RoIs, for the thread pool's cost model.
template <typename R>
double MeanSamplesPerBin(const DeformRoiPoolGeometry& g, const R* rois) {
  if (g.sampling_ratio > 0) {
    return static_cast<double>(g.sampling_ratio) * g.sampling_ratio;
  }
  double total = 0;
  for (int64_t r = 0; r < g.num_rois; ++r) {
    const RoiBox<double> box =
        RoiBoxOnMap<double>(rois + r * 5, g.spatial_scale, g.aligned);
    total += static_cast<double>(SamplesPerBin<double>(box.height, g.out_height, 0)) *
             static_cast<double>(SamplesPerBin<double>(box.width, g.out_width, 0));
  }
  return g.num_rois > 0 ? total / g.num_rois : 1.0;
}

// Pointer to channel 0 of pixel (row, col) of `image`.
template <typename T>
inline const T* Pixel(const T* image, const DeformRoiPoolGeometry& g, int64_t row,
                      int64_t col) {
  return image + (row * g.width + col) * g.channels;
}

// dst[c] += w * src[c] for c in [0, n).
template <typename Acc>
inline void AddScaled(Acc w, const Acc* src, int64_t n, Acc* dst) {
  ArrayOf(dst, n) += w * CastArray<Acc>(src, n);
}

// dst[c] += w0 * s0[c] + w1 * s1[c] + w2 * s2[c] + w3 * s3[c] for c in [0, n).
template <typename Acc>
inline void AddScaled4(const Acc* w, const Acc* s0, const Acc* s1, const Acc* s2,
                       const Acc* s3, int64_t n, Acc* dst) {
  ArrayOf(dst, n) += w[0] * CastArray<Acc>(s0, n) + w[1] * CastArray<Acc>(s1, n) +
                     w[2] * CastArray<Acc>(s2, n) + w[3] * CastArray<Acc>(s3, n);
}

// d0[c] += w0 * src[c], d1[c] += w1 * src[c], d2[c] += w2 * src[c] for c in [0, n).
template <typename T, typename Acc>
inline void AddScaledTo3(Acc w0, Acc w1, Acc w2, const T* __restrict src, int64_t n,
                         Acc* __restrict d0, Acc* __restrict d1, Acc* __restrict d2) {
  if constexpr (kIsAccumulator<T>) {
    for (int64_t c = 0; c < n; ++c) {
      d0[c] += w0 * src[c];
      d1[c] += w1 * src[c];
      d2[c] += w2 * src[c];
    }
  } else {
    // Convert a block at a time, then the same element-wise loop.
    constexpr int64_t kBlock = 64;
    Acc block[kBlock];
    for (int64_t c0 = 0; c0 < n; c0 += kBlock) {
      const int64_t m = std::min(kBlock, n - c0);
      Convert(src + c0, m, block);
      for (int64_t c = 0; c < m; ++c) {
        d0[c0 + c] += w0 * block[c];
        d1[c0 + c] += w1 * block[c];
        d2[c0 + c] += w2 * block[c];
      }
    }
  }
}

template <typename T>
struct ForwardImpl {
  using Acc = typename AccumulatorOf<T>::type;

  static void Run(const CPUDevice& device, const DeformRoiPoolGeometry& g,
                  const T* features, const Acc* rois, const T* offsets, const T* mask,
                  T* output) {
    const int64_t channels = g.channels;
    const double cost = MeanSamplesPerBin(g, rois) * channels * 9.0 + 100.0;
    ParallelFor(device, g.num_bins(), cost, [&](int64_t begin, int64_t end) {
      BinSamples<Acc> s;
      std::vector<Acc> acc(channels);
      // Half-type pixels are converted to Acc (a vector loop) before they are summed.
      std::vector<Acc> pixels(kIsAccumulator<T> ? 0 : 4 * channels);
      const auto pixel = [&](const T* image, int64_t row, int64_t col, int slot) {
        return LoadAccumulated<T>(Pixel(image, g, row, col), channels,
                                  pixels.data() + slot * channels);
      };
      for (int64_t bin = begin; bin < end; ++bin) {
        LocateBin<T, Acc>(g, rois, offsets, bin, &s);
        const T* image = features + s.image * g.image_size();
        std::fill(acc.begin(), acc.end(), Acc(0));
        for (const AxisTap<Acc>& row : s.rows) {
          // Four columns at a time, then the rest one by one.
          size_t i = 0;
          for (; i + 4 <= s.cols.size(); i += 4) {
            const AxisTap<Acc>* c = &s.cols[i];
            const Acc w[4] = {row.weight * c[0].weight, row.weight * c[1].weight,
                              row.weight * c[2].weight, row.weight * c[3].weight};
            AddScaled4(w, pixel(image, row.index, c[0].index, 0),
                       pixel(image, row.index, c[1].index, 1),
                       pixel(image, row.index, c[2].index, 2),
                       pixel(image, row.index, c[3].index, 3), channels, acc.data());
          }
          for (; i < s.cols.size(); ++i) {
            AddScaled(row.weight * s.cols[i].weight,
                      pixel(image, row.index, s.cols[i].index, 0), channels, acc.data());
          }
        }
        const Acc scale = static_cast<Acc>(mask[bin]) * s.inv_count;
        ArrayOf(acc.data(), channels) *= scale;
        StoreAccumulated<T>(acc.data(), channels, output + bin * channels);
      }
    });
  }
};

template <typename T>
struct BackwardImpl {
  using Acc = typename AccumulatorOf<T>::type;

  static void Run(const CPUDevice& device, const DeformRoiPoolGeometry& g,
                  const T* features, const Acc* rois, const T* offsets, const T* mask,
                  const T* output_grad, T* features_grad, T* offsets_grad, T* mask_grad) {
    const double samples = MeanSamplesPerBin(g, rois);
    if (offsets_grad != nullptr) {  // null (with mask_grad) when not wanted
      CoordinateGradients(device, g, samples, features, rois, offsets, mask, output_grad,
                          offsets_grad, mask_grad);
    }
    FeaturesGradient(device, g, samples, rois, offsets, mask, output_grad, features_grad);
  }

  // Offset and mask gradients, one bin at a time. Per channel the bin accumulates
  // the sum of its sample values and of their derivatives along y and x (all
  // element-wise, so it vectorises); three dot products with the output gradient
  // then give the mask gradient and the two offset gradients.
  static void CoordinateGradients(const CPUDevice& device, const DeformRoiPoolGeometry& g,
                                  double samples, const T* features, const Acc* rois,
                                  const T* offsets, const T* mask, const T* output_grad,
                                  T* offsets_grad, T* mask_grad) {
    using Vector = Eigen::Map<const Eigen::Matrix<Acc, Eigen::Dynamic, 1>>;
    const int64_t channels = g.channels;
    const Acc gamma = static_cast<Acc>(g.gamma);
    ParallelFor(device, g.num_bins(), samples * channels * 13.0 + 100.0,
                [&](int64_t begin, int64_t end) {
      BinSamples<Acc> s;
      std::vector<Acc> grad_buffer(kIsAccumulator<T> ? 0 : channels);
      std::vector<Acc> value(channels), slope_y(channels), slope_x(channels);
      for (int64_t bin = begin; bin < end; ++bin) {
        LocateBin<T, Acc>(g, rois, offsets, bin, &s);
        const T* image = features + s.image * g.image_size();
        std::fill(value.begin(), value.end(), Acc(0));
        std::fill(slope_y.begin(), slope_y.end(), Acc(0));
        std::fill(slope_x.begin(), slope_x.end(), Acc(0));
        Acc* v = value.data();
        Acc* vy = slope_y.data();
        Acc* vx = slope_x.data();
        for (const AxisTap<Acc>& row : s.rows) {
          for (const AxisTap<Acc>& col : s.cols) {
            AddScaledTo3(row.weight * col.weight, row.slope * col.weight,
                         row.weight * col.slope, Pixel(image, g, row.index, col.index),
                         channels, v, vy, vx);
          }
        }
        const Vector grad(LoadAccumulated<T>(output_grad + bin * channels, channels,
                                             grad_buffer.data()),
                          channels);
        const Acc m = static_cast<Acc>(mask[bin]) * s.inv_count;
        mask_grad[bin] = static_cast<T>(grad.dot(Vector(v, channels)) * s.inv_count);
        offsets_grad[bin * 2] =
            static_cast<T>(m * gamma * s.roi_height * grad.dot(Vector(vy, channels)));
        offsets_grad[bin * 2 + 1] =
            static_cast<T>(m * gamma * s.roi_width * grad.dot(Vector(vx, channels)));
      }
    });
  }

  // Features gradient, split over (image, channel block) tasks (see the file
  // comment).
  static void FeaturesGradient(const CPUDevice& device, const DeformRoiPoolGeometry& g,
                               double samples, const Acc* rois, const T* offsets,
                               const T* mask, const T* output_grad, T* features_grad) {
    const int64_t channels = g.channels;
    const int64_t image_size = g.image_size();
    if (image_size == 0) return;  // nothing to write
    // RoIs grouped by image: those of image n are order[starts[n] .. starts[n + 1]).
    std::vector<int64_t> starts(g.batch + 1, 0), order(g.num_rois);
    for (int64_t r = 0; r < g.num_rois; ++r) {
      ++starts[static_cast<int64_t>(rois[r * 5]) + 1];
    }
    for (int64_t n = 0; n < g.batch; ++n) starts[n + 1] += starts[n];
    {
      std::vector<int64_t> next(starts.begin(), starts.end() - 1);
      for (int64_t r = 0; r < g.num_rois; ++r) {
        order[next[static_cast<int64_t>(rois[r * 5])]++] = r;
      }
    }

    // Few, wide channel blocks (fewer tasks recompute the geometry), but enough
    // tasks to keep every thread busy; none narrower than a cache line.
    const int64_t threads = ThreadCount(device);
    const int64_t max_blocks = (channels + kMinChannelBlock - 1) / kMinChannelBlock;
    const int64_t wanted = (2 * threads + g.batch - 1) / std::max<int64_t>(1, g.batch);
    int64_t block = (channels + std::min(max_blocks, wanted) - 1) /
                    std::max<int64_t>(1, std::min(max_blocks, wanted));
    block = (block + kMinChannelBlock - 1) / kMinChannelBlock * kMinChannelBlock;
    const int64_t blocks = (channels + block - 1) / block;

    std::vector<Acc> scratch(kIsAccumulator<T> ? 0 : g.batch * image_size);
    Acc* grad_acc = AccumulatorTarget<T>(features_grad, scratch.data());
    const int64_t pixels = g.height * g.width;
    const double rois_per_image =
        g.batch > 0 ? static_cast<double>(g.num_rois) / g.batch : 0.0;
    const double cost =
        rois_per_image * g.bins_per_roi() * (samples * block * 9.0 + 100.0) +
        2.0 * pixels * block;
    ParallelFor(device, g.batch * blocks, cost,
                [&](int64_t task_begin, int64_t task_end) {
      BinSamples<Acc> s;
      std::vector<Acc> grad_buffer(kIsAccumulator<T> ? 0 : block);
      for (int64_t task = task_begin; task < task_end; ++task) {
        // Block-major, so that a thread's run of tasks spans every image and
        // RoIs spread unevenly over the images still share the work out.
        const int64_t n = task % g.batch;
        const int64_t c0 = (task / g.batch) * block;
        const int64_t width = std::min(channels, c0 + block) - c0;
        Acc* image_grad = grad_acc + n * image_size + c0;
        for (int64_t p = 0; p < pixels; ++p) {
          std::fill(image_grad + p * channels, image_grad + p * channels + width, Acc(0));
        }
        for (int64_t k = starts[n]; k < starts[n + 1]; ++k) {
          const int64_t r = order[k];
          for (int64_t bin = r * g.bins_per_roi(); bin < (r + 1) * g.bins_per_roi();
               ++bin) {
            const Acc m = static_cast<Acc>(mask[bin]);
            if (m == Acc(0)) continue;  // the bin reads nothing
            LocateBin<T, Acc>(g, rois, offsets, bin, &s);
            const Acc* grad = LoadAccumulated<T>(output_grad + bin * channels + c0, width,
                                                 grad_buffer.data());
            const Acc scale = m * s.inv_count;
            for (const AxisTap<Acc>& row : s.rows) {
              Acc* dst = image_grad + row.index * g.width * channels;
              for (const AxisTap<Acc>& col : s.cols) {
                AddScaled(row.weight * col.weight * scale, grad, width,
                          dst + col.index * channels);
              }
            }
          }
        }
        if constexpr (!kIsAccumulator<T>) {
          T* out = features_grad + n * image_size + c0;
          for (int64_t p = 0; p < pixels; ++p) {
            Convert(image_grad + p * channels, width, out + p * channels);
          }
        }
      }
    });
  }
};

}  // namespace

namespace functor {

template <typename T>
struct DeformRoiPoolForward<CPUDevice, T> {
  void operator()(const CPUDevice& device, const DeformRoiPoolGeometry& geometry,
                  const T* features, const RoiCoordinate<T>* rois, const T* offsets,
                  const T* mask, T* output) {
    ForwardImpl<T>::Run(device, geometry, features, rois, offsets, mask, output);
  }
};

template <typename T>
struct DeformRoiPoolBackward<CPUDevice, T> {
  void operator()(const CPUDevice& device, const DeformRoiPoolGeometry& geometry,
                  const T* features, const RoiCoordinate<T>* rois, const T* offsets,
                  const T* mask, const T* output_grad, T* features_grad, T* offsets_grad,
                  T* mask_grad) {
    BackwardImpl<T>::Run(device, geometry, features, rois, offsets, mask, output_grad,
                         features_grad, offsets_grad, mask_grad);
  }
};

#define DCN_INSTANTIATE(T)                            \
  template struct DeformRoiPoolForward<CPUDevice, T>; \
  template struct DeformRoiPoolBackward<CPUDevice, T>;
DCN_CALL_FLOAT_TYPES(DCN_INSTANTIATE)
#undef DCN_INSTANTIATE

}  // namespace functor
}  // namespace keras_dcn
