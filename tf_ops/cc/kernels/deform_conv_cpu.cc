// CPU math of DeformConv2D: bilinear im2col over tiles of output pixels, then GEMM.
//
// The output pixels are cut into tiles. For a tile, the sampled and modulated input
// values form a column matrix `cols` of shape [rows, groups * taps * channels_per_group]
// (per row: conv group, then kernel tap, then channel), and every conv group is one
// matrix product with its slice of the kernel, seen as [taps * channels_per_group,
// filters] (the row-major flattening of Keras' [kh, kw, in/groups, filters] layout).
// Temporary memory is a few tiles, whatever the batch size.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstring>
#include <vector>

#include "Eigen/Core"
#include "tensorflow/core/framework/types.h"
#include "tf_ops/cc/kernels/bilinear.h"
#include "tf_ops/cc/kernels/cpu_utils.h"
#include "tf_ops/cc/kernels/deform_conv.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;

template <typename Acc>
using RowMajorMap = Eigen::Map<Eigen::Matrix<Acc, Eigen::Dynamic, Eigen::Dynamic,
                                             Eigen::RowMajor>,
                               0, Eigen::OuterStride<>>;
template <typename Acc>
using ConstRowMajorMap =
    Eigen::Map<const Eigen::Matrix<Acc, Eigen::Dynamic, Eigen::Dynamic,
                                   Eigen::RowMajor>,
               0, Eigen::OuterStride<>>;

// Elements of `cols` a tile aims at (2 MiB of float): large enough for an efficient
// matrix product, small enough to stay in cache.
constexpr int64_t kTileElements = int64_t{1} << 19;

// A run of input channels that lies in one conv group and one deformable group.
struct ChannelRun {
  int64_t begin;
  int64_t end;
  int64_t group;
  int64_t deformable_group;
};

// Splits [0, in_channels) at every conv-group and deformable-group boundary.
std::vector<ChannelRun> ChannelRuns(const DeformConvGeometry& g) {
  const int64_t cg = g.channels_per_group();
  const int64_t cd = g.channels_per_deformable_group();
  std::vector<ChannelRun> runs;
  int64_t begin = 0;
  while (begin < g.in_channels) {
    const int64_t group = begin / cg;
    const int64_t dgroup = begin / cd;
    const int64_t end = std::min((group + 1) * cg, (dgroup + 1) * cd);
    runs.push_back({begin, end, group, dgroup});
    begin = end;
  }
  return runs;
}

// Output pixels per tile for a column matrix `width` wide.
int64_t TileRows(int64_t width) {
  return std::max<int64_t>(16, std::min<int64_t>(1024, kTileElements / width));
}

// Geometry of the sampling points of the output pixels [row_begin, row_end) of the
// flattened [batch * out_height * out_width] grid: one BilinearPoint per pixel,
// deformable group and tap, in that order, written to `points`.
template <typename T, typename Acc>
void LocatePoints(const DeformConvGeometry& g, const T* offsets,
                  int64_t row_begin, int64_t row_end,
                  BilinearPoint<Acc>* points) {
  const int64_t taps = g.taps();
  const int64_t per_row = g.deformable_groups * taps;
  const int64_t pixels = g.out_pixels_per_image();
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t pixel = row % pixels;
    const int64_t ho = pixel / g.out_width;
    const int64_t wo = pixel % g.out_width;
    const T* row_offsets = offsets + row * per_row * 2;
    BilinearPoint<Acc>* row_points = points + (row - row_begin) * per_row;
    for (int64_t dg = 0; dg < g.deformable_groups; ++dg) {
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const int64_t tap = dg * taps + i * g.kernel_w + j;
          const Acc y = static_cast<Acc>(ho * g.stride_h - g.pad_top +
                                         i * g.dilation_h) +
                        static_cast<Acc>(row_offsets[tap * 2]);
          const Acc x = static_cast<Acc>(wo * g.stride_w - g.pad_left +
                                         j * g.dilation_w) +
                        static_cast<Acc>(row_offsets[tap * 2 + 1]);
          SetupBilinear<Acc>(y, x, g.in_height, g.in_width,
                             g.in_width * g.in_channels, g.in_channels,
                             &row_points[tap]);
        }
      }
    }
  }
}

// dst[c] = scale * value of `point` at channel c, for c in [0, n); src points at the
// first channel of the run in the image.
template <typename T, typename Acc>
inline void SampleRun(const BilinearPoint<Acc>& point, Acc scale, const T* src,
                      int64_t n, Acc* dst) {
  if (point.count == 4) {
    const Acc w0 = point.weight[0] * scale, w1 = point.weight[1] * scale;
    const Acc w2 = point.weight[2] * scale, w3 = point.weight[3] * scale;
    const T* s0 = src + point.offset[0];
    const T* s1 = src + point.offset[1];
    const T* s2 = src + point.offset[2];
    const T* s3 = src + point.offset[3];
    for (int64_t c = 0; c < n; ++c) {
      dst[c] = w0 * static_cast<Acc>(s0[c]) + w1 * static_cast<Acc>(s1[c]) +
               w2 * static_cast<Acc>(s2[c]) + w3 * static_cast<Acc>(s3[c]);
    }
    return;
  }
  std::fill(dst, dst + n, Acc(0));
  for (int k = 0; k < point.count; ++k) {
    const Acc w = point.weight[k] * scale;
    const T* s = src + point.offset[k];
    for (int64_t c = 0; c < n; ++c) dst[c] += w * static_cast<Acc>(s[c]);
  }
}

// Fills the column matrix of output pixels [row_begin, row_end) (see the file comment)
// from their sampling points.
template <typename T, typename Acc>
void FillColumns(const DeformConvGeometry& g, const std::vector<ChannelRun>& runs,
                 const T* input, const T* mask, int64_t row_begin,
                 int64_t row_end, const BilinearPoint<Acc>* points, Acc* cols) {
  const int64_t taps = g.taps();
  const int64_t cg = g.channels_per_group();
  const int64_t width = taps * g.in_channels;
  const int64_t per_row = g.deformable_groups * taps;
  const int64_t image_size = g.in_height * g.in_width * g.in_channels;
  const int64_t pixels = g.out_pixels_per_image();
  for (int64_t row = row_begin; row < row_end; ++row) {
    const T* image = input + (row / pixels) * image_size;
    const T* row_mask = mask + row * per_row;
    const BilinearPoint<Acc>* row_points = points + (row - row_begin) * per_row;
    Acc* row_cols = cols + (row - row_begin) * width;
    for (const ChannelRun& run : runs) {
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t tap = run.deformable_group * taps + k;
        Acc* dst = row_cols + (run.group * taps + k) * cg + (run.begin - run.group * cg);
        SampleRun<T, Acc>(row_points[tap], static_cast<Acc>(row_mask[tap]),
                          image + run.begin, run.end - run.begin, dst);
      }
    }
  }
}

template <typename T>
struct ForwardImpl {
  using Acc = typename AccumulatorOf<T>::type;

  static void Run(const CPUDevice& device, const DeformConvGeometry& g,
                  const T* input, const T* offsets, const T* mask,
                  const T* kernel, const T* bias, T* output) {
    const int64_t taps = g.taps();
    const int64_t cg = g.channels_per_group();
    const int64_t fg = g.filters_per_group();
    const int64_t width = taps * g.in_channels;
    const int64_t per_row = g.deformable_groups * taps;
    const int64_t total_rows = g.batch * g.out_pixels_per_image();
    const int64_t tile_rows = TileRows(width);
    const int64_t num_tiles = (total_rows + tile_rows - 1) / tile_rows;

    const AccumulatorCopy<T> kernel_acc(kernel, taps * cg * g.filters);
    const AccumulatorCopy<T> bias_acc(bias, g.filters);
    const std::vector<ChannelRun> runs = ChannelRuns(g);

    const double cost = static_cast<double>(tile_rows) * width *
                        (8.0 + 2.0 * fg);  // sampling + multiply-adds
    device.parallelFor(
        num_tiles, Eigen::TensorOpCost(0, 0, cost),
        [&](Eigen::Index tile_begin, Eigen::Index tile_end) {
          std::vector<Acc> cols(tile_rows * width);
          std::vector<BilinearPoint<Acc>> points(tile_rows * per_row);
          std::vector<Acc> out_acc(std::is_same<T, Acc>::value
                                       ? 0
                                       : tile_rows * g.filters);
          for (Eigen::Index tile = tile_begin; tile < tile_end; ++tile) {
            const int64_t row_begin = tile * tile_rows;
            const int64_t row_end = std::min(total_rows, row_begin + tile_rows);
            const int64_t rows = row_end - row_begin;
            LocatePoints<T, Acc>(g, offsets, row_begin, row_end, points.data());
            FillColumns<T, Acc>(g, runs, input, mask, row_begin, row_end,
                                points.data(), cols.data());
            Acc* out = AccumulatorTarget<T>(output + row_begin * g.filters,
                                            out_acc.data());
            for (int64_t group = 0; group < g.groups; ++group) {
              ConstRowMajorMap<Acc> a(cols.data() + group * taps * cg, rows,
                                      taps * cg, Eigen::OuterStride<>(width));
              ConstRowMajorMap<Acc> b(kernel_acc.data() + group * fg, taps * cg,
                                      fg, Eigen::OuterStride<>(g.filters));
              RowMajorMap<Acc> c(out + group * fg, rows, fg,
                                 Eigen::OuterStride<>(g.filters));
              c.noalias() = a * b;
            }
            RowMajorMap<Acc> all(out, rows, g.filters,
                                 Eigen::OuterStride<>(g.filters));
            all.rowwise() +=
                Eigen::Map<const Eigen::Matrix<Acc, 1, Eigen::Dynamic>>(
                    bias_acc.data(), g.filters);
            StoreAccumulated<T>(out, rows * g.filters,
                                output + row_begin * g.filters);
          }
        });
  }
};

template <typename T>
struct BackwardImpl {
  using Acc = typename AccumulatorOf<T>::type;

  static void Run(const CPUDevice& device, const DeformConvGeometry& g,
                  const T* input, const T* offsets, const T* mask,
                  const T* kernel, const T* output_grad, T* input_grad,
                  T* offsets_grad, T* mask_grad, T* kernel_grad, T* bias_grad) {
    const int64_t taps = g.taps();
    const int64_t cg = g.channels_per_group();
    const int64_t fg = g.filters_per_group();
    const int64_t width = taps * g.in_channels;
    const int64_t per_row = g.deformable_groups * taps;
    const int64_t pixels = g.out_pixels_per_image();
    const int64_t image_size = g.in_height * g.in_width * g.in_channels;
    const int64_t tile_rows = std::min(TileRows(width), pixels);
    const std::vector<ChannelRun> runs = ChannelRuns(g);

    const AccumulatorCopy<T> kernel_acc(kernel, taps * cg * g.filters);
    std::vector<Acc> kernel_grad_acc(taps * cg * g.filters, Acc(0));
    std::vector<Acc> bias_grad_acc(g.filters, Acc(0));
    // Input gradient of one image, accumulated in Acc when T is narrower.
    std::vector<Acc> image_grad_acc(std::is_same<T, Acc>::value ? 0 : image_size);

    std::vector<Acc> cols(tile_rows * width);
    std::vector<Acc> cols_grad(tile_rows * width);
    std::vector<BilinearPoint<Acc>> points(tile_rows * per_row);
    std::vector<Acc> out_grad_acc(std::is_same<T, Acc>::value
                                      ? 0
                                      : tile_rows * g.filters);

    for (int64_t n = 0; n < g.batch; ++n) {
      Acc* image_grad =
          AccumulatorTarget<T>(input_grad + n * image_size, image_grad_acc.data());
      std::fill(image_grad, image_grad + image_size, Acc(0));
      const T* image = input + n * image_size;

      for (int64_t first = 0; first < pixels; first += tile_rows) {
        const int64_t row_begin = n * pixels + first;
        const int64_t rows = std::min(tile_rows, pixels - first);
        const Acc* out_grad = LoadAccumulated<T>(
            output_grad + row_begin * g.filters, rows * g.filters,
            out_grad_acc.data());

        // 1. Per pixel: sampling points, columns, column gradients
        //    (out_grad x kernel^T) and the offset and mask gradients.
        device.parallelFor(
            rows, Eigen::TensorOpCost(0, 0, width * (12.0 + 2.0 * fg)),
            [&](Eigen::Index begin, Eigen::Index end) {
              const int64_t count = end - begin;
              LocatePoints<T, Acc>(g, offsets, row_begin + begin,
                                   row_begin + end,
                                   points.data() + begin * per_row);
              FillColumns<T, Acc>(g, runs, input, mask, row_begin + begin,
                                  row_begin + end,
                                  points.data() + begin * per_row,
                                  cols.data() + begin * width);
              for (int64_t group = 0; group < g.groups; ++group) {
                ConstRowMajorMap<Acc> dy(out_grad + begin * g.filters + group * fg,
                                         count, fg,
                                         Eigen::OuterStride<>(g.filters));
                ConstRowMajorMap<Acc> w(kernel_acc.data() + group * fg, taps * cg,
                                        fg, Eigen::OuterStride<>(g.filters));
                RowMajorMap<Acc> dcols(
                    cols_grad.data() + begin * width + group * taps * cg, count,
                    taps * cg, Eigen::OuterStride<>(width));
                dcols.noalias() = dy * w.transpose();
              }
              CoordinateGradients(g, runs, image, mask, row_begin, begin, end,
                                  points.data(), cols_grad.data(), offsets_grad,
                                  mask_grad);
            });

        // 2. Kernel gradient += cols^T x out_grad, split over kernel rows.
        device.parallelFor(
            taps * g.in_channels, Eigen::TensorOpCost(0, 0, 2.0 * rows * fg),
            [&](Eigen::Index begin, Eigen::Index end) {
              // [begin, end) indexes the rows of all groups' kernels stacked.
              const int64_t group_rows = taps * cg;
              while (begin < end) {
                const int64_t group = begin / group_rows;
                const int64_t local = begin - group * group_rows;
                const int64_t stop = std::min<int64_t>(end, (group + 1) * group_rows);
                const int64_t count = stop - begin;
                ConstRowMajorMap<Acc> a(cols.data() + begin, rows, count,
                                        Eigen::OuterStride<>(width));
                ConstRowMajorMap<Acc> dy(out_grad + group * fg, rows, fg,
                                         Eigen::OuterStride<>(g.filters));
                RowMajorMap<Acc> dw(kernel_grad_acc.data() + local * g.filters +
                                        group * fg,
                                    count, fg, Eigen::OuterStride<>(g.filters));
                dw.noalias() += a.transpose() * dy;
                begin = stop;
              }
            });
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t f = 0; f < g.filters; ++f) {
            bias_grad_acc[f] += out_grad[r * g.filters + f];
          }
        }

        // 3. Input gradient: scatter the column gradients back to the four
        //    neighbours of every point, split over channels so no two threads
        //    write the same element.
        device.parallelFor(
            g.in_channels, Eigen::TensorOpCost(0, 0, 10.0 * rows * taps),
            [&](Eigen::Index begin, Eigen::Index end) {
              ScatterInputGradient(g, runs, mask, row_begin, rows, begin, end,
                                   points.data(), cols_grad.data(), image_grad);
            });
      }
      StoreAccumulated<T>(image_grad, image_size, input_grad + n * image_size);
    }
    StoreAccumulated<T>(kernel_grad_acc.data(), taps * cg * g.filters,
                        kernel_grad);
    StoreAccumulated<T>(bias_grad_acc.data(), g.filters, bias_grad);
  }

  // Offset and mask gradients of the tile rows [begin, end) (relative to row_begin).
  static void CoordinateGradients(const DeformConvGeometry& g,
                                  const std::vector<ChannelRun>& runs,
                                  const T* image, const T* mask,
                                  int64_t row_begin, int64_t begin, int64_t end,
                                  const BilinearPoint<Acc>* points,
                                  const Acc* cols_grad, T* offsets_grad,
                                  T* mask_grad) {
    const int64_t taps = g.taps();
    const int64_t cg = g.channels_per_group();
    const int64_t width = taps * g.in_channels;
    const int64_t per_row = g.deformable_groups * taps;
    std::vector<Acc> value(per_row), grad_y(per_row), grad_x(per_row);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t row = row_begin + r;
      std::fill(value.begin(), value.end(), Acc(0));
      std::fill(grad_y.begin(), grad_y.end(), Acc(0));
      std::fill(grad_x.begin(), grad_x.end(), Acc(0));
      for (const ChannelRun& run : runs) {
        const int64_t n = run.end - run.begin;
        for (int64_t k = 0; k < taps; ++k) {
          const int64_t tap = run.deformable_group * taps + k;
          const BilinearPoint<Acc>& point = points[r * per_row + tap];
          const Acc* dcol = cols_grad + r * width + (run.group * taps + k) * cg +
                            (run.begin - run.group * cg);
          Acc v = 0, gy = 0, gx = 0;
          for (int q = 0; q < point.count; ++q) {
            const T* s = image + point.offset[q] + run.begin;
            Acc dot = 0;
            for (int64_t c = 0; c < n; ++c) dot += dcol[c] * static_cast<Acc>(s[c]);
            v += point.weight[q] * dot;
            gy += point.weight_y[q] * dot;
            gx += point.weight_x[q] * dot;
          }
          value[tap] += v;
          grad_y[tap] += gy;
          grad_x[tap] += gx;
        }
      }
      const T* row_mask = mask + row * per_row;
      for (int64_t tap = 0; tap < per_row; ++tap) {
        const Acc m = static_cast<Acc>(row_mask[tap]);
        mask_grad[row * per_row + tap] = static_cast<T>(value[tap]);
        offsets_grad[(row * per_row + tap) * 2] = static_cast<T>(m * grad_y[tap]);
        offsets_grad[(row * per_row + tap) * 2 + 1] =
            static_cast<T>(m * grad_x[tap]);
      }
    }
  }

  // Adds the input gradient of the tile's `rows` rows, channels [c_begin, c_end).
  static void ScatterInputGradient(const DeformConvGeometry& g,
                                   const std::vector<ChannelRun>& runs,
                                   const T* mask, int64_t row_begin, int64_t rows,
                                   int64_t c_begin, int64_t c_end,
                                   const BilinearPoint<Acc>* points,
                                   const Acc* cols_grad, Acc* image_grad) {
    const int64_t taps = g.taps();
    const int64_t cg = g.channels_per_group();
    const int64_t width = taps * g.in_channels;
    const int64_t per_row = g.deformable_groups * taps;
    for (int64_t r = 0; r < rows; ++r) {
      const T* row_mask = mask + (row_begin + r) * per_row;
      for (const ChannelRun& run : runs) {
        const int64_t lo = std::max(run.begin, c_begin);
        const int64_t hi = std::min(run.end, c_end);
        if (lo >= hi) continue;
        for (int64_t k = 0; k < taps; ++k) {
          const int64_t tap = run.deformable_group * taps + k;
          const BilinearPoint<Acc>& point = points[r * per_row + tap];
          if (point.count == 0) continue;
          const Acc m = static_cast<Acc>(row_mask[tap]);
          const Acc* dcol = cols_grad + r * width + (run.group * taps + k) * cg +
                            (lo - run.group * cg);
          for (int q = 0; q < point.count; ++q) {
            const Acc w = point.weight[q] * m;
            Acc* d = image_grad + point.offset[q] + lo;
            for (int64_t c = 0; c < hi - lo; ++c) d[c] += w * dcol[c];
          }
        }
      }
    }
  }
};

}  // namespace

namespace functor {

template <typename T>
struct DeformConv2DForward<CPUDevice, T> {
  void operator()(const CPUDevice& device, const DeformConvGeometry& geometry,
                  const T* input, const T* offsets, const T* mask,
                  const T* kernel, const T* bias, T* output) {
    ForwardImpl<T>::Run(device, geometry, input, offsets, mask, kernel, bias,
                        output);
  }
};

template <typename T>
struct DeformConv2DBackward<CPUDevice, T> {
  void operator()(const CPUDevice& device, const DeformConvGeometry& geometry,
                  const T* input, const T* offsets, const T* mask,
                  const T* kernel, const T* output_grad, T* input_grad,
                  T* offsets_grad, T* mask_grad, T* kernel_grad, T* bias_grad) {
    BackwardImpl<T>::Run(device, geometry, input, offsets, mask, kernel,
                         output_grad, input_grad, offsets_grad, mask_grad,
                         kernel_grad, bias_grad);
  }
};

#define DCN_INSTANTIATE(T)                              \
  template struct DeformConv2DForward<CPUDevice, T>;   \
  template struct DeformConv2DBackward<CPUDevice, T>;
DCN_INSTANTIATE(Eigen::half)
DCN_INSTANTIATE(Eigen::bfloat16)
DCN_INSTANTIATE(float)
DCN_INSTANTIATE(double)
#undef DCN_INSTANTIATE

}  // namespace functor
}  // namespace keras_dcn
