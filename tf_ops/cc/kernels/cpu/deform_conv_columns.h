// The bilinear im2col of the DeformConv2D CPU kernels (deform_conv_cpu.cc): the
// sampling points of a range of output pixels and their column matrix `cols` of shape
// [rows, groups * taps * channels_per_group] (per row: conv group, then kernel tap,
// then channel), the sizes of the row blocks that the threads sample and multiply
// while the block is in their cache, and the backward pass's chunks.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_DEFORM_CONV_COLUMNS_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_DEFORM_CONV_COLUMNS_H_

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#define EIGEN_USE_THREADS
#include "tf_ops/cc/kernels/cpu/accumulation.h"
#include "tf_ops/cc/kernels/cpu/aligned_array.h"
#include "tf_ops/cc/kernels/cpu/channel_loops.h"
#include "tf_ops/cc/kernels/cpu/cpu_gemm.h"
#include "tf_ops/cc/kernels/cpu/parallel.h"
#include "tf_ops/cc/kernels/portable/bilinear.h"
#include "tf_ops/cc/kernels/portable/deform_conv.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace deform_conv_cpu {

// A read-only row-major matrix in a plain buffer, as an Eigen tensor (for
// contractions).
template <typename Acc>
using ConstMatrix =
    Eigen::TensorMap<Eigen::Tensor<const Acc, 2, Eigen::RowMajor, Eigen::Index>>;

// Values of `cols` a chunk holds at most (8 MiB of float): enough rows per thread
// for the products to run at full speed, few enough to bound the memory.
constexpr int64_t kChunkElements = int64_t{1} << 21;

// Rows of a column matrix `width` wide that fit kChunkElements (at least one).
inline int64_t MostChunkRows(int64_t width) {
  return std::max<int64_t>(1, kChunkElements / width);
}

// Values of a thread's block of `cols` that stay in its L2 cache between sampling
// and multiplying (1 MiB of float).
constexpr int64_t kBlockElements = int64_t{1} << 18;
// A block's product streams the whole kernel through the cache: blocks have at
// least kernel size / kRowsPerKernelValues rows (and kMinBlockRows), so that every
// kernel value read is used for enough rows.
constexpr int64_t kRowsPerKernelValues = int64_t{1} << 12;
constexpr int64_t kMinBlockRows = 128;

// The fewest rows of a block for a kernel of `kernel_size` values (see above).
inline int64_t LeastBlockRows(int64_t kernel_size) {
  return std::max(kMinBlockRows, kernel_size / kRowsPerKernelValues);
}

// Images per chunk of a batch of `batch` images of `pixels` output pixels each, for
// a column matrix `width` wide and a kernel of `kernel_size` values: one, unless an
// image has too few pixels to give every thread a block of LeastBlockRows (the small
// maps of a network's deep stages); then the fewest whole images that do, as far as
// kChunkElements allows, spread evenly over the chunks.
inline int64_t ImagesPerChunk(const Eigen::ThreadPoolDevice& device, int64_t batch,
                              int64_t pixels, int64_t width, int64_t kernel_size) {
  const int64_t wanted = ThreadCount(device) * LeastBlockRows(kernel_size);
  const int64_t most = MostChunkRows(width);
  pixels = std::max<int64_t>(1, pixels);
  const int64_t images = std::min({batch, (wanted + pixels - 1) / pixels, most / pixels});
  if (images <= 1) return 1;
  const int64_t chunks = (batch + images - 1) / images;
  return (batch + chunks - 1) / chunks;
}

// Rows per chunk: `images` whole images when several share a chunk, else the rows of
// one image's `pixels` that kChunkElements allows, spread evenly over its chunks.
inline int64_t ChunkRows(int64_t images, int64_t pixels, int64_t width) {
  if (images > 1) return images * pixels;
  const int64_t most = MostChunkRows(width);
  const int64_t chunks = (pixels + most - 1) / most;
  return (pixels + chunks - 1) / chunks;
}

// Rows per block of `rows` rows (a chunk, or the whole batch) of a column matrix
// `width` wide, for a kernel of `kernel_size` values: at most what fits
// kBlockElements, or LeastBlockRows if that is more, in a block count that is a
// multiple of the thread count, so that every thread gets the same share.
inline int64_t BlockRows(const Eigen::ThreadPoolDevice& device, int64_t rows,
                         int64_t width, int64_t kernel_size) {
  const int64_t threads = ThreadCount(device);
  const int64_t target = std::max(LeastBlockRows(kernel_size), kBlockElements / width);
  const int64_t rounds = (rows + target * threads - 1) / (target * threads);
  const int64_t blocks = rounds * threads;
  return (rows + blocks - 1) / blocks;
}

// A run of input channels that lies in one conv group and one deformable group.
struct ChannelRun {
  int64_t begin;
  int64_t end;
  int64_t group;
  int64_t deformable_group;
};

// Splits [0, in_channels) at every conv-group and deformable-group boundary.
inline std::vector<ChannelRun> ChannelRuns(const DeformConvGeometry& g) {
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

// Geometry of the sampling points of the output pixels [row_begin, row_end) of the
// flattened [batch * out_height * out_width] grid, from their `offsets` (those of
// row_begin first, in Acc): one BilinearPoint per pixel, deformable group and tap, in
// that order, written to `points`. Point offsets are relative to the pixel's own image.
template <typename Acc>
void LocatePoints(const DeformConvGeometry& g, const Acc* offsets, int64_t row_begin,
                  int64_t row_end, BilinearPoint<Acc>* points) {
  const int64_t taps = g.taps();
  const int64_t per_row = g.deformable_groups * taps;
  const int64_t pixels = g.out_pixels_per_image();
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t pixel = row % pixels;
    const int64_t ho = pixel / g.out_width;
    const int64_t wo = pixel % g.out_width;
    const Acc* row_offsets = offsets + (row - row_begin) * per_row * 2;
    BilinearPoint<Acc>* row_points = points + (row - row_begin) * per_row;
    for (int64_t dg = 0; dg < g.deformable_groups; ++dg) {
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const int64_t tap = dg * taps + i * g.kernel_w + j;
          const Acc y = static_cast<Acc>(ho * g.stride_h - g.pad_top + i * g.dilation_h) +
                        row_offsets[tap * 2];
          const Acc x =
              static_cast<Acc>(wo * g.stride_w - g.pad_left + j * g.dilation_w) +
              row_offsets[tap * 2 + 1];
          SetupBilinear<Acc>(y, x, g.in_height, g.in_width, g.in_width * g.in_channels,
                             g.in_channels, &row_points[tap]);
        }
      }
    }
  }
}

// dst[c] = scale * value of `point` at channel c, for c in [0, n), computed in Acc
// and stored as Column; src points at the first channel of the run in the image.
// In float, channel_loops.h's vector loop where it runs, else Eigen arrays.
template <typename T, typename Acc, typename Column>
inline void SampleRun(const BilinearPoint<Acc>& point, Acc scale, const T* src, int64_t n,
                      Column* dst) {
  if constexpr (std::is_same<Acc, float>::value) {
    if (ChannelLoopsInUse()) {
      float weight[4];
      for (int q = 0; q < point.count; ++q) weight[q] = point.weight[q] * scale;
      SampleChannels(AsLoopType(src), point.offset, weight, point.count, n,
                     AsLoopType(dst));
      return;
    }
  }
  auto out = ArrayOf(dst, n);
  auto neighbour = [&](int k) { return CastArray<Acc>(src + point.offset[k], n); };
  switch (point.count) {
    case 4:
      out = ((point.weight[0] * scale) * neighbour(0) +
             (point.weight[1] * scale) * neighbour(1) +
             (point.weight[2] * scale) * neighbour(2) +
             (point.weight[3] * scale) * neighbour(3))
                .template cast<Column>();
      return;
    case 2:
      out = ((point.weight[0] * scale) * neighbour(0) +
             (point.weight[1] * scale) * neighbour(1))
                .template cast<Column>();
      return;
    case 1:
      out = ((point.weight[0] * scale) * neighbour(0)).template cast<Column>();
      return;
    default:  // 0: the neighbours inside the map form a rectangle of 4, 2, 1 or none
      out.setZero();
  }
}

// Fills the rows of the column matrix (see the top of this file) of the output pixels
// [row_begin, row_end) of the batch `input`, from their sampling points and `mask`
// (that of row_begin first, in Acc).
template <typename T, typename Acc, typename Column>
void FillColumns(const DeformConvGeometry& g, const std::vector<ChannelRun>& runs,
                 const T* input, const Acc* mask, int64_t row_begin, int64_t row_end,
                 const BilinearPoint<Acc>* points, Column* cols) {
  const int64_t taps = g.taps();
  const int64_t cg = g.channels_per_group();
  const int64_t width = taps * g.in_channels;
  const int64_t per_row = g.deformable_groups * taps;
  const int64_t pixels = g.out_pixels_per_image();
  const int64_t image_size = g.in_height * g.in_width * g.in_channels;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const T* image = input + (row / pixels) * image_size;
    const Acc* row_mask = mask + (row - row_begin) * per_row;
    const BilinearPoint<Acc>* row_points = points + (row - row_begin) * per_row;
    Column* row_cols = cols + (row - row_begin) * width;
    for (const ChannelRun& run : runs) {
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t tap = run.deformable_group * taps + k;
        Column* dst =
            row_cols + (run.group * taps + k) * cg + (run.begin - run.group * cg);
        SampleRun<T, Acc, Column>(row_points[tap], row_mask[tap],
                                  image + run.begin, run.end - run.begin, dst);
      }
    }
  }
}

// Sizes and buffers of the backward pass: the channel runs, the per-chunk sampling
// points and, with `columns` (for the kernel gradient), the column matrix in Acc;
// with `row_pairs` as well (float Acc, the bfloat16 micro-kernels in use), the
// column matrix also in bfloat16 row pairs (PackRowPairs).
template <typename T>
struct ChunkedColumns {
  using Acc = typename AccumulatorOf<T>::type;

  ChunkedColumns(const Eigen::ThreadPoolDevice& device, const DeformConvGeometry& g,
                 bool columns, bool row_pairs)
      : g(g),
        taps(g.taps()),
        cg(g.channels_per_group()),
        fg(g.filters_per_group()),
        width(g.taps() * g.in_channels),
        per_row(g.deformable_groups * g.taps()),
        pixels(g.out_pixels_per_image()),
        image_size(g.in_height * g.in_width * g.in_channels),
        kernel_size(g.taps() * g.channels_per_group() * g.filters),
        images_per_chunk(ImagesPerChunk(device, g.batch, g.out_pixels_per_image(),
                                        g.taps() * g.in_channels, kernel_size)),
        chunk_rows(ChunkRows(images_per_chunk, g.out_pixels_per_image(),
                             g.taps() * g.in_channels)),
        runs(ChannelRuns(g)),
        cols(columns ? NewAlignedArray<Acc>(chunk_rows * width) : nullptr),
        pairs(columns && row_pairs
                  ? NewAlignedArray<uint32_t>((chunk_rows + 1) / 2 * width)
                  : nullptr),
        points(NewAlignedArray<BilinearPoint<Acc>>(chunk_rows * per_row)) {}

  // Locates the sampling points of the chunk rows [begin, end) (their global rows
  // start at `row_begin`), from the chunk's `offsets` (in Acc).
  void Locate(const Acc* offsets, int64_t row_begin, int64_t begin, int64_t end) {
    LocatePoints(g, offsets + begin * per_row * 2, row_begin + begin, row_begin + end,
                 points.get() + begin * per_row);
  }

  // Samples the column matrix of the chunk rows [begin, end), located before, from
  // the batch `input`, with the chunk's `mask` (in Acc); `begin` is even where there
  // are row pairs.
  void Fill(const T* input, const Acc* mask, int64_t row_begin, int64_t begin,
            int64_t end) {
    FillColumns<T, Acc, Acc>(g, runs, input, mask + begin * per_row, row_begin + begin,
                             row_begin + end, points.get() + begin * per_row,
                             cols.get() + begin * width);
    if constexpr (std::is_same<Acc, float>::value) {
      if (pairs != nullptr) {
        PackRowPairs(cols.get() + begin * width, width, end - begin, width,
                     pairs.get() + begin / 2 * width);
      }
    }
  }

  // The first `rows` rows of the column matrix, for a tensor contraction.
  ConstMatrix<Acc> ColumnMatrix(int64_t rows) const {
    return ConstMatrix<Acc>(cols.get(), rows, width);
  }

  const DeformConvGeometry& g;
  const int64_t taps, cg, fg, width, per_row, pixels, image_size, kernel_size,
      images_per_chunk, chunk_rows;
  const std::vector<ChannelRun> runs;
  // Uninitialised: every pass writes what it reads.
  const AlignedArray<Acc> cols;        // null without columns
  const AlignedArray<uint32_t> pairs;  // null without row pairs
  const AlignedArray<BilinearPoint<Acc>> points;
};

}  // namespace deform_conv_cpu
}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_DEFORM_CONV_COLUMNS_H_
