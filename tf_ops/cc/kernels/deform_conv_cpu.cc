// CPU math of DeformConv2D: bilinear im2col over chunks of output pixels, then GEMM.
//
// The output pixels of an image are cut into chunks. For a chunk, the sampled and
// modulated input values form a column matrix `cols` of shape [rows, groups * taps *
// channels_per_group] (per row: conv group, then kernel tap, then channel), and every
// conv group is one matrix product with its slice of the kernel, seen as
// [taps * channels_per_group, filters] (the row-major flattening of Keras'
// [kh, kw, in/groups, filters] layout).
//
// A chunk's rows are cut into blocks that fit a thread's L2 cache (BlockRows), run in
// parallel. A thread samples a block and multiplies it by the kernel at once, while
// the block is in its cache (forward; backward: the column gradient and the offset /
// mask gradients). The products run on cpu_gemm.h's micro-kernels, which read the
// block where it was written and the kernel packed once per call, or on Eigen's
// products where the CPU lacks AVX-512 (and for double). The kernel gradient, a sum
// over all rows, splits its own rows between the threads (an Eigen tensor contraction
// on all threads without the micro-kernels), and the input gradient is scattered by
// channel ranges, so no two threads write the same element.
//
// Temporary memory does not grow with the batch: the column matrix of one chunk (at
// most kChunkElements values; the backward pass also holds its gradient), the chunk's
// sampling points and the packed kernel. float16 and bfloat16 are read as they are
// and computed in float (the backward pass accumulates one image of input gradient
// and the kernel gradient in float); bfloat16 on the bfloat16 micro-kernels keeps its
// forward column matrix in bfloat16 and multiplies bfloat16 pairs into float sums.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/types.h"
#include "tf_ops/cc/kernels/bilinear.h"
#include "tf_ops/cc/kernels/cpu_gemm.h"
#include "tf_ops/cc/kernels/cpu_utils.h"
#include "tf_ops/cc/kernels/deform_conv.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;
using Index = Eigen::Index;

template <typename Acc>
using Matrix = Eigen::TensorMap<Eigen::Tensor<Acc, 2, Eigen::RowMajor, Index>>;
template <typename Acc>
using ConstMatrix =
    Eigen::TensorMap<Eigen::Tensor<const Acc, 2, Eigen::RowMajor, Index>>;
template <typename Acc>
using RowMajorMap = Eigen::Map<
    Eigen::Matrix<Acc, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
    Eigen::OuterStride<>>;
template <typename Acc>
using ConstRowMajorMap = Eigen::Map<
    const Eigen::Matrix<Acc, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
    Eigen::OuterStride<>>;
template <typename Acc>
using Vector = Eigen::Map<const Eigen::Matrix<Acc, Eigen::Dynamic, 1>>;

// Values of `cols` a chunk holds at most (8 MiB of float): enough rows per thread
// for the products to run at full speed, few enough to bound the memory.
constexpr int64_t kChunkElements = int64_t{1} << 21;

// Rows per chunk of an image's `pixels` output pixels for a column matrix `width`
// wide: as many as kChunkElements allows, spread evenly over the chunks.
int64_t ChunkRows(int64_t pixels, int64_t width) {
  const int64_t most = std::max<int64_t>(1, kChunkElements / width);
  const int64_t chunks = (pixels + most - 1) / most;
  return (pixels + chunks - 1) / chunks;
}

// Runs fn(begin, end) on [0, n) cut into blocks of `block` (the last one may be
// smaller), the blocks in parallel.
template <typename Fn>
void ForBlocks(const CPUDevice& device, int64_t n, int64_t block, const Fn& fn) {
  const int64_t blocks = (n + block - 1) / block;
  // A cost far above the pool's threshold: every block becomes its own task.
  device.parallelFor(blocks, Eigen::TensorOpCost(0, 0, 1e9),
                     [&](Eigen::Index first, Eigen::Index last) {
                       for (Eigen::Index b = first; b < last; ++b) {
                         fn(b * block, std::min(n, (b + 1) * block));
                       }
                     });
}

// `n` split evenly over the threads: the block size giving one block per thread.
int64_t PerThread(const CPUDevice& device, int64_t n) {
  const int64_t threads = std::max<int64_t>(1, device.numThreads());
  return std::max<int64_t>(1, (n + threads - 1) / threads);
}

// Values of a thread's block of `cols` that stay in its L2 cache between sampling
// and multiplying (1 MiB of float).
constexpr int64_t kBlockElements = int64_t{1} << 18;
// A block's product streams the whole kernel through the cache: blocks have at
// least kernel size / kRowsPerKernelValues rows (and kMinBlockRows), so that every
// kernel value read is used for enough rows.
constexpr int64_t kRowsPerKernelValues = int64_t{1} << 12;
constexpr int64_t kMinBlockRows = 128;

// Rows per block of a chunk of `rows` rows of a column matrix `width` wide, for a
// kernel of `kernel_size` values: at most what fits kBlockElements, or the minimum
// above if that is more, in a block count that is a multiple of the thread count,
// so that every thread gets the same share.
int64_t BlockRows(const CPUDevice& device, int64_t rows, int64_t width,
                  int64_t kernel_size) {
  const int64_t threads = std::max<int64_t>(1, device.numThreads());
  const int64_t least = std::max(kMinBlockRows, kernel_size / kRowsPerKernelValues);
  const int64_t target = std::max(least, kBlockElements / width);
  const int64_t rounds = (rows + target * threads - 1) / (target * threads);
  const int64_t blocks = rounds * threads;
  return (rows + blocks - 1) / blocks;
}

// Columns [begin, begin + count) of a row-major matrix expression.
template <typename M>
auto Columns(M matrix, Index begin, Index count) {
  return matrix.slice(Eigen::array<Index, 2>{0, begin},
                      Eigen::array<Index, 2>{matrix.dimension(0), count});
}

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

// Geometry of the sampling points of the output pixels [row_begin, row_end) of the
// flattened [batch * out_height * out_width] grid: one BilinearPoint per pixel,
// deformable group and tap, in that order, written to `points`. Point offsets are
// relative to the pixel's own image.
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

// dst[c] = scale * value of `point` at channel c, for c in [0, n), computed in Acc
// and stored as Column; src points at the first channel of the run in the image.
template <typename T, typename Acc, typename Column>
inline void SampleRun(const BilinearPoint<Acc>& point, Acc scale, const T* src,
                      int64_t n, Column* dst) {
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

// Fills the rows of the column matrix (see the file comment) of the output pixels
// [row_begin, row_end), all in one image, from their sampling points.
template <typename T, typename Acc, typename Column>
void FillColumns(const DeformConvGeometry& g, const std::vector<ChannelRun>& runs,
                 const T* image, const T* mask, int64_t row_begin,
                 int64_t row_end, const BilinearPoint<Acc>* points, Column* cols) {
  const int64_t taps = g.taps();
  const int64_t cg = g.channels_per_group();
  const int64_t width = taps * g.in_channels;
  const int64_t per_row = g.deformable_groups * taps;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const T* row_mask = mask + row * per_row;
    const BilinearPoint<Acc>* row_points = points + (row - row_begin) * per_row;
    Column* row_cols = cols + (row - row_begin) * width;
    for (const ChannelRun& run : runs) {
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t tap = run.deformable_group * taps + k;
        Column* dst =
            row_cols + (run.group * taps + k) * cg + (run.begin - run.group * cg);
        SampleRun<T, Acc, Column>(row_points[tap], static_cast<Acc>(row_mask[tap]),
                                  image + run.begin, run.end - run.begin, dst);
      }
    }
  }
}

// How the row products of T run: the float or bfloat16 micro-kernels of cpu_gemm.h
// where this CPU has them (bfloat16 products for bfloat16), Eigen's products
// otherwise (and for double).
enum class ProductPath { kEigen, kFloat, kBfloat16 };

template <typename T>
ProductPath ProductPathFor() {
  if constexpr (std::is_same<T, double>::value) return ProductPath::kEigen;
  const CpuGemmIsa isa = CpuGemmIsaInUse();
  if (std::is_same<T, Eigen::bfloat16>::value && isa == CpuGemmIsa::kAvx512Bf16) {
    return ProductPath::kBfloat16;
  }
  return isa == CpuGemmIsa::kGeneric ? ProductPath::kEigen : ProductPath::kFloat;
}

// The kernel, one conv group after another, as the right-hand side of the row
// products: [taps * cg, fg] for the forward product (columns x kernel), or its
// transpose [fg, taps * cg] for the column gradient (out_grad x kernel^T). Packed
// once (on all threads) for the micro-kernels, or kept in Acc for Eigen.
template <typename T>
class KernelOperand {
 public:
  using Acc = typename AccumulatorOf<T>::type;

  KernelOperand(const CPUDevice& device, const DeformConvGeometry& g, const T* kernel,
                bool transposed)
      : path_(ProductPathFor<T>()),
        transposed_(transposed),
        filters_(g.filters),
        depth_(transposed ? g.filters_per_group() : g.taps() * g.channels_per_group()),
        width_(transposed ? g.taps() * g.channels_per_group() : g.filters_per_group()),
        kernel_acc_(kernel, path_ == ProductPath::kEigen
                                ? g.taps() * g.channels_per_group() * g.filters
                                : 0) {
    if (path_ == ProductPath::kEigen) return;
    packed_.reserve(g.groups);
    for (int64_t group = 0; group < g.groups; ++group) {
      packed_.emplace_back(depth_, width_, path_ == ProductPath::kBfloat16);
      PackedMatrix& packed = packed_.back();
      const T* source = kernel + group * g.filters_per_group();
      const int64_t k_stride = transposed ? 1 : g.filters;
      const int64_t n_stride = transposed ? g.filters : 1;
      ForBlocks(device, packed.panels(), PerThread(device, packed.panels()),
                [&](int64_t first, int64_t last) {
        if constexpr (std::is_same<T, Eigen::bfloat16>::value) {
          if (packed.bfloat16_pairs()) {
            packed.PackBfloat16(reinterpret_cast<const uint16_t*>(source), k_stride,
                                n_stride, first, last);
            return;
          }
        }
        packed.PackFloat(source, k_stride, n_stride, first, last);
      });
    }
  }

  ProductPath path() const { return path_; }

  // out[i, :] = init + a[i, :] x (the group's kernel) for i < rows; a and out are
  // row-major with row strides lda and ldc, init holds the product's width of values
  // (or is null). A is Acc, or bfloat16 on the bfloat16 path.
  template <typename A>
  void Multiply(int64_t group, const A* a, int64_t lda, int64_t rows, const Acc* init,
                Acc* out, int64_t ldc) const {
    if constexpr (std::is_same<A, Eigen::bfloat16>::value) {
      MultiplyRows(reinterpret_cast<const uint16_t*>(a), lda, rows, packed_[group],
                   init, out, ldc);
    } else {
      static_assert(std::is_same<A, Acc>::value, "A must be Acc or bfloat16");
      if constexpr (std::is_same<Acc, float>::value) {
        if (path_ == ProductPath::kFloat) {
          MultiplyRows(a, lda, rows, packed_[group], init, out, ldc);
          return;
        }
      }
      const ConstRowMajorMap<Acc> a_map(a, rows, depth_, Eigen::OuterStride<>(lda));
      RowMajorMap<Acc> out_map(out, rows, width_, Eigen::OuterStride<>(ldc));
      const int64_t kernel_rows = transposed_ ? width_ : depth_;
      const int64_t kernel_cols = transposed_ ? depth_ : width_;
      const ConstRowMajorMap<Acc> w(kernel_acc_.data() + group * kernel_cols,
                                    kernel_rows, kernel_cols,
                                    Eigen::OuterStride<>(filters_));
      if (transposed_) {
        out_map.noalias() = a_map * w.transpose();
      } else {
        out_map.noalias() = a_map * w;
      }
      if (init != nullptr) {
        out_map.rowwise() += Eigen::Map<const Eigen::Matrix<Acc, 1, Eigen::Dynamic>>(
            init, width_);
      }
    }
  }

 private:
  const ProductPath path_;
  const bool transposed_;
  const int64_t filters_, depth_, width_;
  const AccumulatorCopy<T> kernel_acc_;
  std::vector<PackedMatrix> packed_;
};

// Sizes and buffers shared by the forward and backward passes: the channel runs and
// the per-chunk column matrix (of Column values) and sampling points.
template <typename T, typename Column = typename AccumulatorOf<T>::type>
struct ChunkedColumns {
  using Acc = typename AccumulatorOf<T>::type;

  explicit ChunkedColumns(const DeformConvGeometry& g)
      : g(g),
        taps(g.taps()),
        cg(g.channels_per_group()),
        fg(g.filters_per_group()),
        width(g.taps() * g.in_channels),
        per_row(g.deformable_groups * g.taps()),
        pixels(g.out_pixels_per_image()),
        image_size(g.in_height * g.in_width * g.in_channels),
        kernel_size(g.taps() * g.channels_per_group() * g.filters),
        chunk_rows(ChunkRows(g.out_pixels_per_image(), g.taps() * g.in_channels)),
        runs(ChannelRuns(g)),
        cols(chunk_rows * width),
        points(chunk_rows * per_row) {}

  // Samples the chunk rows [begin, end) (their global rows start at `row_begin`),
  // all in the image `image`.
  void Fill(const T* image, const T* offsets, const T* mask, int64_t row_begin,
            int64_t begin, int64_t end) {
    BilinearPoint<Acc>* block_points = points.data() + begin * per_row;
    LocatePoints<T, Acc>(g, offsets, row_begin + begin, row_begin + end, block_points);
    FillColumns<T, Acc, Column>(g, runs, image, mask, row_begin + begin,
                                row_begin + end, block_points,
                                cols.data() + begin * width);
  }

  // The first `rows` rows of the column matrix, for a tensor contraction.
  ConstMatrix<Column> ColumnMatrix(int64_t rows) const {
    return ConstMatrix<Column>(cols.data(), rows, width);
  }

  const DeformConvGeometry& g;
  const int64_t taps, cg, fg, width, per_row, pixels, image_size, kernel_size,
      chunk_rows;
  const std::vector<ChannelRun> runs;
  std::vector<Column> cols;
  std::vector<BilinearPoint<Acc>> points;
};

// The forward pass with a column matrix of Column values: Acc, or bfloat16 on the
// bfloat16 path.
template <typename T, typename Column>
struct ForwardImpl {
  using Acc = typename AccumulatorOf<T>::type;

  static void Run(const CPUDevice& device, const DeformConvGeometry& g,
                  const T* input, const T* offsets, const T* mask,
                  const T* kernel, const T* bias, T* output) {
    ChunkedColumns<T, Column> c(g);
    const KernelOperand<T> kernel_operand(device, g, kernel, /*transposed=*/false);
    const AccumulatorCopy<T> bias_acc(bias, g.filters);
    std::vector<Acc> out_acc(kIsAccumulator<T> ? 0 : c.chunk_rows * g.filters);

    for (int64_t n = 0; n < g.batch; ++n) {
      const T* image = input + n * c.image_size;
      for (int64_t first = 0; first < c.pixels; first += c.chunk_rows) {
        const int64_t row_begin = n * c.pixels + first;
        const int64_t rows = std::min(c.chunk_rows, c.pixels - first);
        T* chunk_output = output + row_begin * g.filters;
        Acc* out = AccumulatorTarget<T>(chunk_output, out_acc.data());
        const int64_t block = BlockRows(device, rows, c.width, c.kernel_size);
        ForBlocks(device, rows, block, [&](int64_t begin, int64_t end) {
          c.Fill(image, offsets, mask, row_begin, begin, end);
          for (int64_t group = 0; group < g.groups; ++group) {
            kernel_operand.Multiply(group, c.cols.data() + begin * c.width +
                                               group * c.taps * c.cg,
                                    c.width, end - begin, bias_acc.data() + group * c.fg,
                                    out + begin * g.filters + group * c.fg, g.filters);
          }
          StoreAccumulated<T>(out + begin * g.filters, (end - begin) * g.filters,
                              chunk_output + begin * g.filters);
        });
      }
    }
  }
};

template <typename T>
struct BackwardImpl {
  using Acc = typename AccumulatorOf<T>::type;

  static void Run(const CPUDevice& device, const DeformConvGeometry& g,
                  const T* input, const T* offsets, const T* mask,
                  const T* kernel, const T* output_grad, T* input_grad,
                  T* offsets_grad, T* mask_grad, T* kernel_grad, T* bias_grad) {
    ChunkedColumns<T> c(g);
    const KernelOperand<T> kernel_operand(device, g, kernel, /*transposed=*/true);
    const int64_t kernel_size = c.kernel_size;
    std::vector<Acc> kernel_grad_acc(kIsAccumulator<T> ? 0 : kernel_size);
    Acc* kernel_grad_out = AccumulatorTarget<T>(kernel_grad, kernel_grad_acc.data());
    std::fill(kernel_grad_out, kernel_grad_out + kernel_size, Acc(0));
    std::vector<Acc> bias_grad_acc(g.filters, Acc(0));
    // Input gradient of one image, accumulated in Acc when T is narrower.
    std::vector<Acc> image_grad_acc(kIsAccumulator<T> ? 0 : c.image_size);
    std::vector<Acc> cols_grad(c.chunk_rows * c.width);
    std::vector<Acc> out_grad_acc;

    for (int64_t n = 0; n < g.batch; ++n) {
      const T* image = input + n * c.image_size;
      Acc* image_grad = AccumulatorTarget<T>(input_grad + n * c.image_size,
                                             image_grad_acc.data());
      std::fill(image_grad, image_grad + c.image_size, Acc(0));

      for (int64_t first = 0; first < c.pixels; first += c.chunk_rows) {
        const int64_t row_begin = n * c.pixels + first;
        const int64_t rows = std::min(c.chunk_rows, c.pixels - first);
        const Acc* out_grad = InAccumulator<T>(
            device, output_grad + row_begin * g.filters, rows * g.filters,
            &out_grad_acc);

        // 1. Per row block: columns, their gradient out_grad x kernel^T, and the
        //    offset and mask gradients.
        const int64_t block = BlockRows(device, rows, c.width, c.kernel_size);
        ForBlocks(device, rows, block, [&](int64_t begin, int64_t end) {
          c.Fill(image, offsets, mask, row_begin, begin, end);
          ColumnGradients(c, kernel_operand, output_grad + row_begin * g.filters,
                          out_grad, begin, end, cols_grad.data());
          CoordinateGradients(c, image, mask, row_begin, begin, end, cols_grad.data(),
                              offsets_grad, mask_grad);
        });

        // 2. Kernel gradient += cols^T x out_grad, on all threads; bias gradient
        //    += the sum of out_grad.
        AddKernelGradient(device, c, kernel_operand.path(), out_grad, rows,
                          kernel_grad_out);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t f = 0; f < g.filters; ++f) {
            bias_grad_acc[f] += out_grad[r * g.filters + f];
          }
        }

        // 3. Input gradient: scatter the column gradients back to the four
        //    neighbours of every point, split into one wide channel range per
        //    thread, so no two threads write the same element.
        ForBlocks(device, g.in_channels, PerThread(device, g.in_channels),
                  [&](int64_t begin, int64_t end) {
          ScatterInputGradient(c, mask, row_begin, rows, begin, end, cols_grad.data(),
                               image_grad);
        });
      }
      StoreOnAllThreads<T>(device, image_grad, c.image_size,
                           input_grad + n * c.image_size);
    }
    StoreOnAllThreads<T>(device, kernel_grad_out, kernel_size, kernel_grad);
    StoreAccumulated<T>(bias_grad_acc.data(), g.filters, bias_grad);
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

  // kernel_grad += cols^T x out_grad over the chunk's `rows` rows, per conv group, on
  // all threads: with the micro-kernels, out_grad packed once and the kernel
  // gradient's rows split between the threads; else an Eigen tensor contraction.
  static void AddKernelGradient(const CPUDevice& device, const ChunkedColumns<T>& c,
                                ProductPath path, const Acc* out_grad, int64_t rows,
                                Acc* kernel_grad) {
    const DeformConvGeometry& g = c.g;
    const int64_t depth = c.taps * c.cg;
    if constexpr (std::is_same<Acc, float>::value) {  // double always takes Eigen's
      if (path != ProductPath::kEigen) {
        for (int64_t group = 0; group < g.groups; ++group) {
          PackedMatrix packed(rows, c.fg, /*bfloat16_pairs=*/false);
          ForBlocks(device, packed.panels(), PerThread(device, packed.panels()),
                    [&](int64_t first, int64_t last) {
            packed.PackFloat(out_grad + group * c.fg, g.filters, 1, first, last);
          });
          const int64_t share = PerThread(device, depth);
          const int64_t block = (share + kTileRows - 1) / kTileRows * kTileRows;
          ForBlocks(device, depth, block, [&](int64_t begin, int64_t end) {
            AddTransposedProduct(c.cols.data() + group * depth + begin, c.width,
                                 end - begin, packed,
                                 kernel_grad + begin * g.filters + group * c.fg,
                                 g.filters);
          });
        }
        return;
      }
    }
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

  // Offset and mask gradients of the chunk rows [begin, end) (relative to row_begin).
  static void CoordinateGradients(const ChunkedColumns<T>& c, const T* image,
                                  const T* mask, int64_t row_begin, int64_t begin,
                                  int64_t end, const Acc* cols_grad,
                                  T* offsets_grad, T* mask_grad) {
    const int64_t per_row = c.per_row;
    std::vector<Acc> value(per_row), grad_y(per_row), grad_x(per_row);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t row = row_begin + r;
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
          Acc v = 0, gy = 0, gx = 0;
          const Vector<Acc> dcol_vector(dcol, n);
          for (int q = 0; q < point.count; ++q) {
            // Eigen's dot product is vectorised; a plain loop is not, since the
            // compiler may not reorder the sum.
            const Acc dot = dcol_vector.dot(
                Vector<T>(image + point.offset[q] + run.begin, n).template cast<Acc>());
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

  // Adds the input gradient of the chunk's `rows` rows, channels [c_begin, c_end).
  static void ScatterInputGradient(const ChunkedColumns<T>& c, const T* mask,
                                   int64_t row_begin, int64_t rows, int64_t c_begin,
                                   int64_t c_end, const Acc* cols_grad,
                                   Acc* image_grad) {
    const int64_t per_row = c.per_row;
    for (int64_t r = 0; r < rows; ++r) {
      const T* row_mask = mask + (row_begin + r) * per_row;
      for (const ChannelRun& run : c.runs) {
        const int64_t lo = std::max(run.begin, c_begin);
        const int64_t hi = std::min(run.end, c_end);
        if (lo >= hi) continue;
        for (int64_t k = 0; k < c.taps; ++k) {
          const int64_t tap = run.deformable_group * c.taps + k;
          const BilinearPoint<Acc>& point = c.points[r * per_row + tap];
          if (point.count == 0) continue;
          const Acc m = static_cast<Acc>(row_mask[tap]);
          const Acc* dcol = cols_grad + r * c.width + (run.group * c.taps + k) * c.cg +
                            (lo - run.group * c.cg);
          for (int q = 0; q < point.count; ++q) {
            const Acc w = point.weight[q] * m;
            Acc* d = image_grad + point.offset[q] + lo;
            for (int64_t ch = 0; ch < hi - lo; ++ch) d[ch] += w * dcol[ch];
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
    using Acc = typename AccumulatorOf<T>::type;
    if constexpr (std::is_same<T, Eigen::bfloat16>::value) {
      if (ProductPathFor<T>() == ProductPath::kBfloat16) {
        ForwardImpl<T, Eigen::bfloat16>::Run(device, geometry, input, offsets, mask,
                                             kernel, bias, output);
        return;
      }
    }
    ForwardImpl<T, Acc>::Run(device, geometry, input, offsets, mask, kernel, bias,
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
