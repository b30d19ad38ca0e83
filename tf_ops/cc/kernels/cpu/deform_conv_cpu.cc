// CPU math of DeformConv2D: bilinear im2col over blocks of output pixels, then GEMM.
//
// The sampled and modulated input values of a set of output pixels form a column
// matrix of shape [rows, groups * taps * channels_per_group] (per row: conv group,
// then kernel tap, then channel), and every conv group is one matrix product with its
// slice of the kernel, seen as [taps * channels_per_group, filters] (the row-major
// flattening of Keras' [kh, kw, in/groups, filters] layout).
//
// Forward: the output pixels of the whole batch are cut into blocks that fit a
// thread's L2 cache (BlockRows), run in parallel. A task samples its block into a
// column buffer its thread leases (scratch_pool.h, so the buffer stays in that
// thread's cache from one block to the next) and multiplies it by the kernel at once.
//
// Backward: the output pixels are cut into chunks, several whole images where the
// maps are small, else parts of one image (deform_conv_columns.h), since the kernel
// gradient sums over a chunk's column matrix. A chunk's rows are cut into blocks, run
// in parallel: a thread samples a block and computes its column gradient and the
// offset / mask gradients while the block is in its cache. Then, in one task, each
// thread adds to its share of the kernel gradient's rows and scatters the input
// gradient into its share of the input channels, so no two threads write the same
// element. The two halves (input, offsets and mask; kernel and bias) share only the
// sampling points, and each can run alone: the op's gradient runs them as two ops.
//
// The products run on cpu_gemm.h's micro-kernels, which read the block where it was
// written and the kernel packed once per call, or on Eigen's products where the CPU
// lacks AVX-512 (and for double); the loops over channels (sampling, dot products,
// scatter, conversions) on channel_loops.h's, or Eigen's arrays there.
//
// Temporary memory does not grow with the batch: one column block per thread
// (forward), the column matrix of one chunk and its gradient (at most kChunkElements
// values each), the chunk's sampling points and its packed out_grad (backward), and
// the packed kernel.
// float16 and bfloat16 are read as they are and computed in float (the backward pass
// accumulates the input gradient of a chunk's images and the kernel gradient in
// float); bfloat16 on the bfloat16 micro-kernels keeps its forward column matrix in
// bfloat16, and the backward's also in bfloat16 row pairs for the kernel gradient,
// and multiplies bfloat16 pairs into float sums.
//
// This file holds the two passes; the column matrix is built in
// deform_conv_columns.h, the products with the kernel run through
// deform_conv_products.h, and the work is shared out over the threads by parallel.h.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "tf_ops/cc/kernels/cpu/accumulation.h"
#include "tf_ops/cc/kernels/cpu/aligned_array.h"
#include "tf_ops/cc/kernels/cpu/channel_loops.h"
#include "tf_ops/cc/kernels/cpu/cpu_gemm.h"
#include "tf_ops/cc/kernels/cpu/deform_conv_columns.h"
#include "tf_ops/cc/kernels/cpu/deform_conv_products.h"
#include "tf_ops/cc/kernels/cpu/parallel.h"
#include "tf_ops/cc/kernels/cpu/scratch_pool.h"
#include "tf_ops/cc/kernels/float_types.h"
#include "tf_ops/cc/kernels/portable/bilinear.h"
#include "tf_ops/cc/kernels/portable/deform_conv.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace deform_conv_cpu {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;
using Index = Eigen::Index;

// A row-major matrix in a plain buffer, as an Eigen tensor (see ConstMatrix).
template <typename Acc>
using Matrix = Eigen::TensorMap<Eigen::Tensor<Acc, 2, Eigen::RowMajor, Index>>;
// A read-only vector in a plain buffer, as an Eigen matrix.
template <typename Acc>
using Vector = Eigen::Map<const Eigen::Matrix<Acc, Eigen::Dynamic, 1>>;

// Columns [begin, begin + count) of a row-major matrix expression.
template <typename M>
auto Columns(M matrix, Index begin, Index count) {
  return matrix.slice(Eigen::array<Index, 2>{0, begin},
                      Eigen::array<Index, 2>{matrix.dimension(0), count});
}

// Sets columns [begin, end) of the first `rows` rows of a row-major matrix with row
// stride `stride` to 0.
template <typename Acc>
void ZeroColumns(Acc* matrix, int64_t rows, int64_t stride, int64_t begin, int64_t end) {
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(matrix + r * stride + begin, matrix + r * stride + end, Acc(0));
  }
}

// The forward pass with a column matrix of Column values: Acc, or bfloat16 on the
// bfloat16 path. Every block of output pixels is sampled, multiplied and stored by
// one task, in scratch buffers its thread leases.
template <typename T, typename Column>
struct ForwardImpl {
  using Acc = typename AccumulatorOf<T>::type;

  static void Run(const CPUDevice& device, const DeformConvGeometry& g, const T* input,
                  const T* offsets, const T* mask, const T* kernel, const T* bias,
                  T* output) {
    const int64_t taps = g.taps();
    const int64_t cg = g.channels_per_group();
    const int64_t fg = g.filters_per_group();
    const int64_t width = taps * g.in_channels;
    const int64_t rows = g.batch * g.out_pixels_per_image();
    const std::vector<ChannelRun> runs = ChannelRuns(g);
    const KernelOperand<T> kernel_operand(device, g, kernel, /*transposed=*/false);
    const AccumulatorCopy<T> bias_acc(bias, g.filters);
    const int64_t block = BlockRows(device, rows, width, taps * cg * g.filters);
    const int64_t per_row = g.deformable_groups * taps;
    const bool narrow = !kIsAccumulator<T>;
    ScratchPool<Column> cols_pool(block * width);
    ScratchPool<BilinearPoint<Acc>> points_pool(block * per_row);
    ScratchPool<Acc> out_pool(narrow ? block * g.filters : 0);
    // A block's offsets and mask in Acc, where T is narrower.
    ScratchPool<Acc> coordinates_pool(narrow ? block * per_row * 3 : 0);

    ForBlocks(device, rows, block, [&](int64_t begin, int64_t end) {
      typename ScratchPool<Column>::Lease cols(&cols_pool);
      typename ScratchPool<BilinearPoint<Acc>>::Lease points(&points_pool);
      typename ScratchPool<Acc>::Lease out_acc(&out_pool);
      typename ScratchPool<Acc>::Lease coordinates(&coordinates_pool);
      const int64_t count = (end - begin) * per_row;
      const Acc* block_offsets = LoadAccumulated<T>(offsets + begin * per_row * 2,
                                                    count * 2, coordinates.data());
      const Acc* block_mask = LoadAccumulated<T>(
          mask + begin * per_row, count,
          narrow ? coordinates.data() + block * per_row * 2 : nullptr);
      LocatePoints(g, block_offsets, begin, end, points.data());
      FillColumns<T, Acc, Column>(g, runs, input, block_mask, begin, end, points.data(),
                                  cols.data());
      T* block_output = output + begin * g.filters;
      Acc* out = AccumulatorTarget<T>(block_output, out_acc.data());
      for (int64_t group = 0; group < g.groups; ++group) {
        kernel_operand.Multiply(group, cols.data() + group * taps * cg, width,
                                end - begin, bias_acc.data() + group * fg,
                                out + group * fg, g.filters);
      }
      StoreAccumulated<T>(out, (end - begin) * g.filters, block_output);
    });
  }
};

template <typename T>
struct BackwardImpl {
  using Acc = typename AccumulatorOf<T>::type;

  // Null input_grad (with offsets_grad and mask_grad) skips those gradients, null
  // kernel_grad (with bias_grad) the kernel and bias gradients.
  static void Run(const CPUDevice& device, const DeformConvGeometry& g, const T* input,
                  const T* offsets, const T* mask, const T* kernel, const T* output_grad,
                  T* input_grad, T* offsets_grad, T* mask_grad, T* kernel_grad,
                  T* bias_grad) {
    const bool input_grads = input_grad != nullptr;
    const bool kernel_grads = kernel_grad != nullptr;
    const ProductPath path = ProductPathFor<T>();
    // The transposed kernel, for the column gradient, only where it is computed.
    std::optional<KernelOperand<T>> kernel_operand;
    if (input_grads) kernel_operand.emplace(device, g, kernel, /*transposed=*/true);
    ChunkedColumns<T> c(device, g, /*columns=*/kernel_grads,
                        /*row_pairs=*/kernel_grads && path == ProductPath::kBfloat16);
    const int64_t kernel_size = c.kernel_size;
    // Uninitialised buffers: each is written before it is read. Where T is narrower
    // than Acc, the kernel gradient and the input gradient of a chunk's images are
    // accumulated in Acc, and a chunk's out_grad is read in Acc.
    const bool narrow = !kIsAccumulator<T>;
    const AlignedArray<Acc> kernel_grad_acc =
        NewAlignedArray<Acc>(narrow && kernel_grads ? kernel_size : 0);
    Acc* kernel_grad_out =
        kernel_grads ? AccumulatorTarget<T>(kernel_grad, kernel_grad_acc.get()) : nullptr;
    // On the micro-kernels, each thread zeroes its own rows of the kernel gradient
    // when the first chunk adds to them.
    const bool micro_kernels = MicroKernelGradient(path);
    if (kernel_grads && !micro_kernels) {
      ZeroOnAllThreads(device, kernel_grad_out, kernel_size);
    }
    std::vector<Acc> bias_grad_acc(g.filters, Acc(0));
    const AlignedArray<Acc> image_grad_acc =
        NewAlignedArray<Acc>(narrow && input_grads ? c.images_per_chunk * c.image_size : 0);
    const AlignedArray<Acc> out_grad_acc =
        NewAlignedArray<Acc>(narrow ? c.chunk_rows * g.filters : 0);
    // A chunk's offsets and mask and their gradients (3 values a point each).
    const int64_t coordinates = c.chunk_rows * c.per_row * 3;
    const AlignedArray<Acc> coordinates_acc =
        NewAlignedArray<Acc>(narrow ? 2 * coordinates : 0);
    Acc* const coordinates_grad_acc =
        narrow ? coordinates_acc.get() + coordinates : nullptr;
    const AlignedArray<Acc> cols_grad =
        NewAlignedArray<Acc>(input_grads ? c.chunk_rows * c.width : 0);
    // What each thread does of steps 2 and 3 below: rows of the kernel gradient (at
    // multiples of the micro-kernels' tile) and a range of input channels.
    const int64_t threads = ThreadCount(device);
    const int64_t depth = c.taps * c.cg;
    const int64_t depth_share =
        (PerThread(device, depth) + kTileRows - 1) / kTileRows * kTileRows;
    const int64_t channel_share = PerThread(device, g.in_channels);

    for (int64_t n = 0; n < g.batch; n += c.images_per_chunk) {
      const int64_t images = std::min(c.images_per_chunk, g.batch - n);
      const int64_t group_rows = images * c.pixels;
      Acc* image_grad = input_grads ? AccumulatorTarget<T>(input_grad + n * c.image_size,
                                                           image_grad_acc.get())
                                    : nullptr;

      for (int64_t first = 0; first < group_rows; first += c.chunk_rows) {
        const int64_t row_begin = n * c.pixels + first;
        const int64_t rows = std::min(c.chunk_rows, group_rows - first);
        // (The bfloat16 path's column gradient reads the op's output_grad itself.)
        const Acc* out_grad =
            kernel_grads || path != ProductPath::kBfloat16
                ? InAccumulator<T>(device, output_grad + row_begin * g.filters,
                                   rows * g.filters, out_grad_acc.get())
                : nullptr;
        const int64_t points = rows * c.per_row;
        const Acc* chunk_offsets =
            InAccumulator<T>(device, offsets + row_begin * c.per_row * 2, points * 2,
                             coordinates_acc.get());
        const Acc* chunk_mask =
            InAccumulator<T>(device, mask + row_begin * c.per_row, points,
                             narrow ? coordinates_acc.get() + 2 * points : nullptr);
        Acc* chunk_offsets_grad =
            input_grads ? AccumulatorTarget<T>(offsets_grad + row_begin * c.per_row * 2,
                                               coordinates_grad_acc)
                        : nullptr;
        Acc* chunk_mask_grad =
            input_grads
                ? AccumulatorTarget<T>(mask_grad + row_begin * c.per_row,
                                       narrow ? coordinates_grad_acc + 2 * points : nullptr)
                : nullptr;

        // 1. Per row block: the sampling points, and the columns (for the kernel
        //    gradient) or their gradient out_grad x kernel^T with the offset and mask
        //    gradients (for the input gradients), or both (blocks start at even rows,
        //    where the columns are kept in row pairs too).
        int64_t block = BlockRows(device, rows, c.width, c.kernel_size);
        if (c.pairs != nullptr) block += block % 2;
        ForBlocks(device, rows, block, [&](int64_t begin, int64_t end) {
          c.Locate(chunk_offsets, row_begin, begin, end);
          if (kernel_grads) c.Fill(input, chunk_mask, row_begin, begin, end);
          if (!input_grads) return;
          ColumnGradients(c, *kernel_operand, output_grad + row_begin * g.filters,
                          out_grad, begin, end, cols_grad.get());
          CoordinateGradients(c, input, chunk_mask, row_begin, begin, end,
                              cols_grad.get(), chunk_offsets_grad, chunk_mask_grad);
        });
        if (input_grads) {
          StoreOnAllThreads<T>(device, chunk_offsets_grad, points * 2,
                               offsets_grad + row_begin * c.per_row * 2);
          StoreOnAllThreads<T>(device, chunk_mask_grad, points,
                               mask_grad + row_begin * c.per_row);
        }
        if (kernel_grads) {
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t f = 0; f < g.filters; ++f) {
              bias_grad_acc[f] += out_grad[r * g.filters + f];
            }
          }
        }

        // 2. Kernel gradient += cols^T x out_grad.
        // 3. Input gradient: scatter the column gradients back to the four
        //    neighbours of every point, each thread in its own channel range, so no
        //    two threads write the same element; the range is zeroed first in the
        //    chunk's images when the chunk is their first.
        // On the micro-kernels, a thread does its share of both in one task, after
        // out_grad is packed; else Eigen's contraction runs first.
        std::vector<PackedMatrix> packed;
        if (kernel_grads && micro_kernels) {
          packed = PackOutputGradient(device, c, path, output_grad + row_begin * g.filters,
                                      out_grad, rows);
        } else if (kernel_grads) {
          AddKernelGradientEigen(device, c, out_grad, rows, kernel_grad_out);
        }
        const bool first_chunk = n == 0 && first == 0;
        ForBlocks(device, threads, 1, [&](int64_t thread, int64_t) {
          if (kernel_grads && micro_kernels) {
            AddKernelGradientRows(c, packed, rows, std::min(depth, thread * depth_share),
                                  std::min(depth, (thread + 1) * depth_share),
                                  first_chunk, kernel_grad_out);
          }
          const int64_t c_begin = std::min(g.in_channels, thread * channel_share);
          const int64_t c_end = std::min(g.in_channels, c_begin + channel_share);
          if (!input_grads || c_begin == c_end) return;
          if (first == 0) {
            ZeroColumns(image_grad, images * g.in_height * g.in_width, g.in_channels,
                        c_begin, c_end);
          }
          ScatterInputGradient(c, chunk_mask, n, row_begin, rows, c_begin, c_end,
                               cols_grad.get(), image_grad);
        });
      }
      if (input_grads) {
        StoreOnAllThreads<T>(device, image_grad, images * c.image_size,
                             input_grad + n * c.image_size);
      }
    }
    if (kernel_grads) {
      StoreOnAllThreads<T>(device, kernel_grad_out, kernel_size, kernel_grad);
      StoreAccumulated<T>(bias_grad_acc.data(), g.filters, bias_grad);
    }
  }

  // Whether the kernel gradient runs on cpu_gemm.h's micro-kernels (Acc float on the
  // float or bfloat16 path), else on Eigen's contraction.
  static bool MicroKernelGradient(ProductPath path) {
    return std::is_same<Acc, float>::value && path != ProductPath::kEigen;
  }

  // cols_grad rows [begin, end) = out_grad x kernel^T, one conv group after the
  // other: on the bfloat16 path from the op's bfloat16 output_grad itself (both given
  // from the chunk's first row), else from out_grad in Acc.
  static void ColumnGradients(const ChunkedColumns<T>& c, const KernelOperand<T>& kernel,
                              const T* output_grad, const Acc* out_grad, int64_t begin,
                              int64_t end, Acc* cols_grad) {
    const int64_t filters = c.g.filters;
    for (int64_t group = 0; group < c.g.groups; ++group) {
      Acc* dcols = cols_grad + begin * c.width + group * c.taps * c.cg;
      const int64_t offset = begin * filters + group * c.fg;
      if constexpr (std::is_same<T, Eigen::bfloat16>::value) {
        if (kernel.path() == ProductPath::kBfloat16) {
          kernel.Multiply(group, output_grad + offset, filters, end - begin, nullptr,
                          dcols, c.width);
          continue;
        }
      }
      kernel.Multiply(group, out_grad + offset, filters, end - begin, nullptr, dcols,
                      c.width);
    }
  }

  // The chunk's `rows` rows of out_grad packed for the kernel gradient's
  // micro-kernels, one [rows, fg] matrix per conv group, on all threads: on the
  // bfloat16 path as bfloat16 pairs of the op's output_grad, else from out_grad in
  // Acc (both given from the chunk's first row).
  static std::vector<PackedMatrix> PackOutputGradient(const CPUDevice& device,
                                                      const ChunkedColumns<T>& c,
                                                      ProductPath path,
                                                      const T* output_grad,
                                                      const Acc* out_grad, int64_t rows) {
    const DeformConvGeometry& g = c.g;
    const bool pairs = path == ProductPath::kBfloat16;
    std::vector<PackedMatrix> packed;
    packed.reserve(g.groups);
    for (int64_t group = 0; group < g.groups; ++group) {
      packed.emplace_back(rows, c.fg, pairs);
    }
    const int64_t panels = packed.front().panels();
    ForBlocks(device, g.groups * panels, PerThread(device, g.groups * panels),
              [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t group = i / panels, panel = i % panels;
        const int64_t offset = group * c.fg;
        if constexpr (std::is_same<T, Eigen::bfloat16>::value) {
          if (pairs) {
            packed[group].PackBfloat16(
                reinterpret_cast<const uint16_t*>(output_grad + offset), g.filters, 1,
                panel, panel + 1);
            continue;
          }
        }
        if constexpr (std::is_same<Acc, float>::value) {
          packed[group].PackFloat(out_grad + offset, g.filters, 1, panel, panel + 1);
        }
      }
    });
    return packed;
  }

  // Rows [begin, end) of every conv group's kernel gradient += cols^T x out_grad over
  // the chunk's `rows` rows (out_grad `packed` by PackOutputGradient), on the
  // micro-kernels, in slabs of rows whose columns stay in the thread's L2 cache; with
  // `zero`, the rows are set to 0 first.
  static void AddKernelGradientRows(const ChunkedColumns<T>& c,
                                    const std::vector<PackedMatrix>& packed, int64_t rows,
                                    int64_t begin, int64_t end, bool zero,
                                    Acc* kernel_grad) {
    if constexpr (std::is_same<Acc, float>::value) {
      if (begin >= end) return;
      const DeformConvGeometry& g = c.g;
      const int64_t depth = c.taps * c.cg;
      const bool pairs = packed.front().bfloat16_pairs();
      const int64_t slabs = ((end - begin) * rows + kBlockElements - 1) / kBlockElements;
      int64_t slab_rows = (rows + slabs - 1) / slabs;
      if (pairs) slab_rows += slab_rows % 2;  // row pairs start at even rows
      for (int64_t group = 0; group < g.groups; ++group) {
        Acc* target = kernel_grad + begin * g.filters + group * c.fg;
        if (zero) ZeroColumns(target, end - begin, g.filters, 0, c.fg);
        const int64_t column = group * depth + begin;
        for (int64_t first = 0; first < rows; first += slab_rows) {
          const int64_t count = std::min(slab_rows, rows - first);
          if (pairs) {
            AddTransposedProduct(c.pairs.get() + first / 2 * c.width + column, c.width,
                                 end - begin, packed[group], first, count, target,
                                 g.filters);
          } else {
            AddTransposedProduct(c.cols.get() + first * c.width + column, c.width,
                                 end - begin, packed[group], first, count, target,
                                 g.filters);
          }
        }
      }
    }
  }

  // kernel_grad += cols^T x out_grad over the chunk's `rows` rows, per conv group:
  // an Eigen tensor contraction on all threads (where the micro-kernels do not run).
  static void AddKernelGradientEigen(const CPUDevice& device, const ChunkedColumns<T>& c,
                                     const Acc* out_grad, int64_t rows,
                                     Acc* kernel_grad) {
    const DeformConvGeometry& g = c.g;
    const int64_t depth = c.taps * c.cg;
    Matrix<Acc> kernel_grad_matrix(kernel_grad, depth, g.filters);
    const ConstMatrix<Acc> out_grad_matrix(out_grad, rows, g.filters);
    const Eigen::array<Eigen::IndexPair<Index>, 1> over_rows = {
        Eigen::IndexPair<Index>(0, 0)};
    if (g.groups == 1) {  // no slicing: Eigen's plain contraction is faster
      kernel_grad_matrix.device(device) +=
          c.ColumnMatrix(rows).contract(out_grad_matrix, over_rows);
      return;
    }
    for (int64_t group = 0; group < g.groups; ++group) {
      Columns(kernel_grad_matrix, group * c.fg, c.fg).device(device) +=
          Columns(c.ColumnMatrix(rows), group * depth, depth)
              .contract(Columns(out_grad_matrix, group * c.fg, c.fg), over_rows);
    }
  }

  // Offset and mask gradients of the chunk rows [begin, end) (relative to row_begin)
  // of the batch `input`; mask, offsets_grad and mask_grad are the chunk's, in Acc.
  static void CoordinateGradients(const ChunkedColumns<T>& c, const T* input,
                                  const Acc* mask, int64_t row_begin, int64_t begin,
                                  int64_t end, const Acc* cols_grad, Acc* offsets_grad,
                                  Acc* mask_grad) {
    const int64_t per_row = c.per_row;
    std::vector<Acc> value(per_row), grad_y(per_row), grad_x(per_row);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t row = row_begin + r;
      const T* image = input + (row / c.pixels) * c.image_size;
      std::fill(value.begin(), value.end(), Acc(0));
      std::fill(grad_y.begin(), grad_y.end(), Acc(0));
      std::fill(grad_x.begin(), grad_x.end(), Acc(0));
      for (const ChannelRun& run : c.runs) {
        const int64_t n = run.end - run.begin;
        for (int64_t k = 0; k < c.taps; ++k) {
          const int64_t tap = run.deformable_group * c.taps + k;
          const BilinearPoint<Acc>& point = c.points[r * per_row + tap];
          const Acc* dcol = cols_grad + r * c.width + (run.group * c.taps + k) * c.cg +
                            (run.begin - run.group * c.cg);
          Acc dots[4];
          NeighbourDots(dcol, image + run.begin, point, n, dots);
          Acc v = 0, gy = 0, gx = 0;
          for (int q = 0; q < point.count; ++q) {
            v += point.weight[q] * dots[q];
            gy += point.weight_y[q] * dots[q];
            gx += point.weight_x[q] * dots[q];
          }
          value[tap] += v;
          grad_y[tap] += gy;
          grad_x[tap] += gx;
        }
      }
      for (int64_t tap = 0; tap < per_row; ++tap) {
        const int64_t point = r * per_row + tap;
        mask_grad[point] = value[tap];
        offsets_grad[point * 2] = mask[point] * grad_y[tap];
        offsets_grad[point * 2 + 1] = mask[point] * grad_x[tap];
      }
    }
  }

  // dots[q] = sum_c dcol[c] * neighbour q of `point` at channel c, for c < n (src
  // points at the run's first channel in the image): channel_loops.h's vector loop in
  // float where it runs, else Eigen's dot products (vectorised; a plain loop is not,
  // since the compiler may not reorder the sum).
  static void NeighbourDots(const Acc* dcol, const T* src, const BilinearPoint<Acc>& point,
                            int64_t n, Acc* dots) {
    if constexpr (std::is_same<Acc, float>::value) {
      if (ChannelLoopsInUse()) {
        DotChannels(dcol, AsLoopType(src), point.offset, point.count, n, dots);
        return;
      }
    }
    const Vector<Acc> dcol_vector(dcol, n);
    for (int q = 0; q < point.count; ++q) {
      dots[q] = dcol_vector.dot(Vector<T>(src + point.offset[q], n).template cast<Acc>());
    }
  }

  // Adds the input gradient of the chunk's `rows` rows, channels [c_begin, c_end), to
  // `images_grad`, the input gradient of the images from `first_image` on (`mask`:
  // the chunk's, in Acc).
  static void ScatterInputGradient(const ChunkedColumns<T>& c, const Acc* mask,
                                   int64_t first_image, int64_t row_begin, int64_t rows,
                                   int64_t c_begin, int64_t c_end, const Acc* cols_grad,
                                   Acc* images_grad) {
    const int64_t per_row = c.per_row;
    for (int64_t r = 0; r < rows; ++r) {
      const Acc* row_mask = mask + r * per_row;
      Acc* image_grad =
          images_grad + ((row_begin + r) / c.pixels - first_image) * c.image_size;
      for (const ChannelRun& run : c.runs) {
        const int64_t lo = std::max(run.begin, c_begin);
        const int64_t hi = std::min(run.end, c_end);
        if (lo >= hi) continue;
        for (int64_t k = 0; k < c.taps; ++k) {
          const int64_t tap = run.deformable_group * c.taps + k;
          const BilinearPoint<Acc>& point = c.points[r * per_row + tap];
          if (point.count == 0) continue;
          const Acc m = row_mask[tap];
          const Acc* dcol = cols_grad + r * c.width + (run.group * c.taps + k) * c.cg +
                            (lo - run.group * c.cg);
          Acc weight[4];
          for (int q = 0; q < point.count; ++q) weight[q] = point.weight[q] * m;
          if constexpr (std::is_same<Acc, float>::value) {
            if (ChannelLoopsInUse()) {
              ScatterChannels(dcol, point.offset, weight, point.count, hi - lo,
                              image_grad + lo);
              continue;
            }
          }
          for (int q = 0; q < point.count; ++q) {
            Acc* d = image_grad + point.offset[q] + lo;
            for (int64_t ch = 0; ch < hi - lo; ++ch) d[ch] += weight[q] * dcol[ch];
          }
        }
      }
    }
  }
};

}  // namespace
}  // namespace deform_conv_cpu

namespace functor {

using CPUDevice = Eigen::ThreadPoolDevice;

template <typename T>
struct DeformConv2DForward<CPUDevice, T> {
  void operator()(const CPUDevice& device, const DeformConvGeometry& geometry,
                  const T* input, const T* offsets, const T* mask, const T* kernel,
                  const T* bias, T* output) {
    using Acc = typename AccumulatorOf<T>::type;
    if constexpr (std::is_same<T, Eigen::bfloat16>::value) {
      if (deform_conv_cpu::ProductPathFor<T>() ==
          deform_conv_cpu::ProductPath::kBfloat16) {
        deform_conv_cpu::ForwardImpl<T, Eigen::bfloat16>::Run(
            device, geometry, input, offsets, mask, kernel, bias, output);
        return;
      }
    }
    deform_conv_cpu::ForwardImpl<T, Acc>::Run(device, geometry, input, offsets, mask,
                                              kernel, bias, output);
  }
};

template <typename T>
struct DeformConv2DBackward<CPUDevice, T> {
  void operator()(const CPUDevice& device, const DeformConvGeometry& geometry,
                  const T* input, const T* offsets, const T* mask, const T* kernel,
                  const T* output_grad, T* input_grad, T* offsets_grad, T* mask_grad,
                  T* kernel_grad, T* bias_grad) {
    deform_conv_cpu::BackwardImpl<T>::Run(device, geometry, input, offsets, mask, kernel,
                                          output_grad, input_grad, offsets_grad,
                                          mask_grad, kernel_grad, bias_grad);
  }
};

#define DCN_INSTANTIATE(T)                           \
  template struct DeformConv2DForward<CPUDevice, T>; \
  template struct DeformConv2DBackward<CPUDevice, T>;
DCN_CALL_FLOAT_TYPES(DCN_INSTANTIATE)
#undef DCN_INSTANTIATE

}  // namespace functor
}  // namespace keras_dcn
