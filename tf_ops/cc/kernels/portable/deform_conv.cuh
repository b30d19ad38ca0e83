// CUDA kernels of DeformConv2D, forward and every gradient. No TensorFlow here.
//
// The math and layouts are those of cpu/deform_conv_cpu.cc (see deform_conv.h): the
// output pixels, as rows of the flattened [batch * out_height * out_width] grid, are
// processed in chunks. For a chunk, the bilinear im2col (SampleColumns) fills a column
// matrix `cols` [rows, groups * taps * cg] (per row: conv group, kernel tap, channel)
// in the accumulation type, and every conv group is one product with its slice of the
// kernel, seen as [taps * cg, filters]. The backward pass forms the column gradients
// cols_grad = out_grad x kernel^T; from them follow the offset and mask gradients
// (CoordinateGradients: per sampling point, a sum over its channels) and the input
// gradient (InputGradient: scattered to the four neighbours with atomic adds); then
// kernel_grad += cols^T x out_grad and bias_grad += the column sums of out_grad.
// Half types are read and written as T, and everything in between is float.
//
// Entry points, for T = __half, __nv_bfloat16, float, double under nvcc (float and
// double with a host compiler):
//   DeformConvForwardScratchBytes<T>(geometry, tuning)
//   DeformConvForward<T>(exec, geometry, tuning, input, offsets, mask, kernel, bias,
//                        output, scratch)
//   DeformConvBackwardScratchBytes<T>(geometry, tuning)
//   DeformConvBackward<T>(exec, geometry, tuning, input, offsets, mask, kernel,
//                         output_grad, input_grad, offsets_grad, mask_grad,
//                         kernel_grad, bias_grad, scratch)
// `exec` is a CudaExecutor (all pointers on its device, work queued on its stream) or
// a HostExecutor (gpu_utils.cuh); `scratch` holds the bytes the *ScratchBytes
// function asked for. Every output is fully overwritten. In DeformConvBackward, null
// input_grad, offsets_grad and mask_grad skip those gradients, null kernel_grad and
// bias_grad these two (each set null together or not at all).
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_CONV_CUH_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_CONV_CUH_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <type_traits>

#include "tf_ops/cc/kernels/portable/bilinear.h"
#include "tf_ops/cc/kernels/portable/deform_conv.h"
#include "tf_ops/cc/kernels/portable/gpu_utils.cuh"
#include "tf_ops/cc/kernels/portable/tiled_gemm.cuh"

namespace keras_dcn {
namespace gpu {

// Knobs that change how the work is cut, never the result (up to rounding).
struct DeformConvTuning {
  // Elements of one column buffer: output pixels are processed in chunks of
  // column_elements / (taps * in_channels) rows (at least one).
  int64_t column_elements = int64_t{1} << 24;
  // Output pixels summed by one block of the kernel-gradient product.
  int64_t split_k_rows = 2048;
};

namespace deform_conv_internal {

// Rows of out_grad summed by one work item of BiasGradient.
constexpr int64_t kBiasRows = 256;

// The sizes the kernels use, in their index type.
template <typename Index>
struct Dims {
  Index in_height, in_width, in_channels, image_size;
  Index out_width, pixels, filters;
  Index kernel_w, taps, per_row;  // per_row: sampling points per output pixel
  Index cg, cd, fg;          // channels per group / deformable group, filters per group
  Index width, group_width;  // of a column row, of one conv group's part of it
  Index stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
};

template <typename Index>
Dims<Index> MakeDims(const DeformConvGeometry& g) {
  Dims<Index> d;
  d.in_height = static_cast<Index>(g.in_height);
  d.in_width = static_cast<Index>(g.in_width);
  d.in_channels = static_cast<Index>(g.in_channels);
  d.image_size = static_cast<Index>(g.in_height * g.in_width * g.in_channels);
  d.out_width = static_cast<Index>(g.out_width);
  d.pixels = static_cast<Index>(g.out_pixels_per_image());
  d.filters = static_cast<Index>(g.filters);
  d.kernel_w = static_cast<Index>(g.kernel_w);
  d.taps = static_cast<Index>(g.taps());
  d.per_row = static_cast<Index>(g.deformable_groups * g.taps());
  d.cg = static_cast<Index>(g.channels_per_group());
  d.cd = static_cast<Index>(g.channels_per_deformable_group());
  d.fg = static_cast<Index>(g.filters_per_group());
  d.width = static_cast<Index>(g.taps() * g.in_channels);
  d.group_width = static_cast<Index>(g.taps() * g.channels_per_group());
  d.stride_h = static_cast<Index>(g.stride_h);
  d.stride_w = static_cast<Index>(g.stride_w);
  d.dilation_h = static_cast<Index>(g.dilation_h);
  d.dilation_w = static_cast<Index>(g.dilation_w);
  d.pad_top = static_cast<Index>(g.pad_top);
  d.pad_left = static_cast<Index>(g.pad_left);
  return d;
}

// The bilinear point of sampling point `point` (deformable group * taps + tap) of
// output pixel `row`, as in the CPU kernels' LocatePoints.
template <typename T, typename Acc, typename Index>
DCN_HOST_DEVICE void LocatePoint(const Dims<Index>& d, const T* offsets, Index row,
                                 Index point, BilinearPoint<Acc>* p) {
  const Index pixel = row % d.pixels;
  const Index ho = pixel / d.out_width;
  const Index wo = pixel - ho * d.out_width;
  const Index tap = point % d.taps;
  const Index i = tap / d.kernel_w;
  const Index j = tap - i * d.kernel_w;
  const T* offset = offsets + (row * d.per_row + point) * 2;
  const Acc y = static_cast<Acc>(ho * d.stride_h - d.pad_top + i * d.dilation_h) +
                Convert<Acc>(offset[0]);
  const Acc x = static_cast<Acc>(wo * d.stride_w - d.pad_left + j * d.dilation_w) +
                Convert<Acc>(offset[1]);
  SetupBilinear<Acc>(y, x, d.in_height, d.in_width,
                     static_cast<int64_t>(d.in_width) * d.in_channels, d.in_channels, p);
}

// Element `index` of a chunk's column matrix: its row within the chunk, input
// channel and sampling point.
template <typename Index>
struct ColumnElement {
  Index local_row;
  Index channel;
  Index point;
};

template <typename Index>
DCN_HOST_DEVICE ColumnElement<Index> SplitColumnIndex(const Dims<Index>& d, Index index) {
  ColumnElement<Index> e;
  e.local_row = index / d.width;
  const Index col = index - e.local_row * d.width;
  const Index group = col / d.group_width;
  const Index in_group = col - group * d.group_width;
  const Index tap = in_group / d.cg;
  e.channel = group * d.cg + (in_group - tap * d.cg);
  e.point = (e.channel / d.cd) * d.taps + tap;
  return e;
}

// cols[index] = mask * bilinear(input) for every element of a chunk's column matrix.
template <typename T, typename Acc, typename Index>
struct SampleColumns {
  Dims<Index> d;
  const T* input;
  const T* offsets;
  const T* mask;
  Index row_begin;
  Acc* cols;

  DCN_HOST_DEVICE void operator()(Index index) const {
    const ColumnElement<Index> e = SplitColumnIndex(d, index);
    const Index row = row_begin + e.local_row;
    BilinearPoint<Acc> p;
    LocatePoint<T, Acc, Index>(d, offsets, row, e.point, &p);
    const Acc m = Convert<Acc>(mask[row * d.per_row + e.point]);
    const T* image = input + (row / d.pixels) * d.image_size + e.channel;
    Acc value = Acc(0);
    for (int q = 0; q < p.count; ++q) {
      value += (p.weight[q] * m) * Convert<Acc>(image[p.offset[q]]);
    }
    cols[index] = value;
  }
};

// Offset and mask gradients of one sampling point (of one output pixel of the
// chunk): sums over the channels of its deformable group.
template <typename T, typename Acc, typename Index>
struct CoordinateGradients {
  Dims<Index> d;
  const T* input;
  const T* offsets;
  const T* mask;
  const Acc* cols_grad;
  Index row_begin;
  T* offsets_grad;
  T* mask_grad;

  DCN_HOST_DEVICE void operator()(Index index) const {
    const Index local_row = index / d.per_row;
    const Index point = index - local_row * d.per_row;
    const Index row = row_begin + local_row;
    const Index dgroup = point / d.taps;
    const Index tap = point - dgroup * d.taps;
    BilinearPoint<Acc> p;
    LocatePoint<T, Acc, Index>(d, offsets, row, point, &p);

    // dot[q] = sum over channels c of cols_grad(c) * input at neighbour q.
    Acc dot[4] = {Acc(0), Acc(0), Acc(0), Acc(0)};
    if (p.count > 0) {
      const T* image = input + (row / d.pixels) * d.image_size;
      const Acc* row_grad = cols_grad + local_row * d.width;
      Index c = dgroup * d.cd;
      const Index c_end = c + d.cd;
      while (c < c_end) {  // one conv group at a time
        const Index group = c / d.cg;
        const Index run_end = c_end < (group + 1) * d.cg ? c_end : (group + 1) * d.cg;
        const Index base = (group * d.taps + tap) * d.cg - group * d.cg;
        for (; c < run_end; ++c) {
          const Acc g = row_grad[base + c];
          for (int q = 0; q < 4; ++q) {
            if (q < p.count) dot[q] += g * Convert<Acc>(image[p.offset[q] + c]);
          }
        }
      }
    }
    Acc value = Acc(0), grad_y = Acc(0), grad_x = Acc(0);
    for (int q = 0; q < p.count; ++q) {
      value += p.weight[q] * dot[q];
      grad_y += p.weight_y[q] * dot[q];
      grad_x += p.weight_x[q] * dot[q];
    }
    const Index out = row * d.per_row + point;
    const Acc m = Convert<Acc>(mask[out]);
    mask_grad[out] = Convert<T>(value);
    offsets_grad[out * 2] = Convert<T>(m * grad_y);
    offsets_grad[out * 2 + 1] = Convert<T>(m * grad_x);
  }
};

// Adds the input gradient of one element of the chunk's column matrix to the four
// neighbours of its sampling point.
template <typename T, typename Acc, typename Index>
struct InputGradient {
  Dims<Index> d;
  const T* offsets;
  const T* mask;
  const Acc* cols_grad;
  Index row_begin;
  Acc* input_grad;

  DCN_HOST_DEVICE void operator()(Index index) const {
    const ColumnElement<Index> e = SplitColumnIndex(d, index);
    const Index row = row_begin + e.local_row;
    const Acc g = cols_grad[index] * Convert<Acc>(mask[row * d.per_row + e.point]);
    if (g == Acc(0)) return;
    BilinearPoint<Acc> p;
    LocatePoint<T, Acc, Index>(d, offsets, row, e.point, &p);
    Acc* image_grad = input_grad + (row / d.pixels) * d.image_size + e.channel;
    for (int q = 0; q < p.count; ++q) {
      AtomicAdd(image_grad + p.offset[q], p.weight[q] * g);
    }
  }
};

// bias_grad[f] += the sum of out_grad[r, f] over kBiasRows rows of the chunk.
template <typename T, typename Acc, typename Index>
struct BiasGradient {
  const T* output_grad;  // first row of the chunk
  Index rows;
  Index filters;
  Acc* bias_grad;

  DCN_HOST_DEVICE void operator()(Index index) const {
    const Index block = index / filters;
    const Index f = index - block * filters;
    const Index begin = block * static_cast<Index>(kBiasRows);
    const Index end = rows < begin + static_cast<Index>(kBiasRows)
                          ? rows
                          : begin + static_cast<Index>(kBiasRows);
    Acc sum = Acc(0);
    for (Index r = begin; r < end; ++r) sum += Convert<Acc>(output_grad[r * filters + f]);
    AtomicAdd(bias_grad + f, sum);
  }
};

inline int64_t TotalRows(const DeformConvGeometry& g) {
  return g.batch * g.out_pixels_per_image();
}

inline int64_t ChunkRows(const DeformConvGeometry& g, const DeformConvTuning& tuning) {
  const int64_t total = TotalRows(g);
  const int64_t width = g.taps() * g.in_channels;
  if (total == 0 || width == 0) return 0;
  return std::max<int64_t>(1, std::min(total, tuning.column_elements / width));
}

// The largest size any kernel indexes: decides between 32- and 64-bit indices.
inline int64_t LargestIndex(const DeformConvGeometry& g, int64_t chunk_rows) {
  const int64_t rows = TotalRows(g);
  const int64_t sizes[] = {
      g.batch * g.in_height * g.in_width * g.in_channels,
      rows * g.deformable_groups * g.taps() * 2,
      rows * g.filters,
      chunk_rows * g.taps() * g.in_channels,
      g.taps() * g.channels_per_group() * g.filters,
      // Sampling positions before the offsets.
      (g.out_height + 1) * g.stride_h + g.kernel_h * g.dilation_h + g.pad_top,
      (g.out_width + 1) * g.stride_w + g.kernel_w * g.dilation_w + g.pad_left,
  };
  return *std::max_element(std::begin(sizes), std::end(sizes));
}

// Scratch buffers, carved from `layout` (sizes only when it has no base).
template <typename T>
struct ForwardScratch {
  using Acc = typename AccumulatorOf<T>::type;
  int64_t chunk_rows;
  Acc* cols;

  ForwardScratch(const DeformConvGeometry& g, const DeformConvTuning& tuning,
                 ScratchLayout* layout) {
    chunk_rows = ChunkRows(g, tuning);
    cols = layout->Take<Acc>(chunk_rows * g.taps() * g.in_channels);
  }
};

template <typename T>
struct BackwardScratch {
  using Acc = typename AccumulatorOf<T>::type;
  int64_t chunk_rows;
  Acc* cols;
  Acc* cols_grad;
  // Sums of the narrow types' input, kernel and bias gradients.
  Acc* input_grad = nullptr;
  Acc* kernel_grad = nullptr;
  Acc* bias_grad = nullptr;

  BackwardScratch(const DeformConvGeometry& g, const DeformConvTuning& tuning,
                  ScratchLayout* layout) {
    chunk_rows = ChunkRows(g, tuning);
    cols = layout->Take<Acc>(chunk_rows * g.taps() * g.in_channels);
    cols_grad = layout->Take<Acc>(chunk_rows * g.taps() * g.in_channels);
    if (!kIsAccumulator<T>) {
      input_grad = layout->Take<Acc>(g.batch * g.in_height * g.in_width * g.in_channels);
      kernel_grad = layout->Take<Acc>(g.taps() * g.channels_per_group() * g.filters);
      bias_grad = layout->Take<Acc>(g.filters);
    }
  }
};

// Where to sum a gradient: the output itself when T is the accumulation type,
// otherwise the scratch buffer.
template <typename T, typename Acc>
Acc* SumTarget(T* output, Acc* scratch) {
  if constexpr (std::is_same<T, Acc>::value) {
    return output;
  } else {
    return scratch;
  }
}

// The column matrix `cols` of the chunk of `rows` output pixels from `row_begin`,
// one column element per work item.
template <typename T, typename Index, typename Exec>
void SampleChunk(const Exec& exec, const DeformConvGeometry& g, const Dims<Index>& d,
                 const T* input, const T* offsets, const T* mask, int64_t row_begin,
                 int64_t rows, typename AccumulatorOf<T>::type* cols) {
  SampleColumns<T, typename AccumulatorOf<T>::type, Index> sample;
  sample.d = d;
  sample.input = input;
  sample.offsets = offsets;
  sample.mask = mask;
  sample.row_begin = static_cast<Index>(row_begin);
  sample.cols = cols;
  exec.template ForEach<Index>(rows * g.taps() * g.in_channels, sample);
}

template <typename Index, typename T, typename Exec>
void Forward(const Exec& exec, const DeformConvGeometry& g,
             const DeformConvTuning& tuning, const T* input, const T* offsets,
             const T* mask, const T* kernel, const T* bias, T* output, void* scratch) {
  using Acc = typename AccumulatorOf<T>::type;
  ScratchLayout layout(scratch);
  const ForwardScratch<T> buffers(g, tuning, &layout);
  const int64_t total = TotalRows(g);
  const Dims<Index> d = MakeDims<Index>(g);
  const int64_t width = g.taps() * g.in_channels;
  for (int64_t row_begin = 0; row_begin < total; row_begin += buffers.chunk_rows) {
    const int64_t rows = std::min(buffers.chunk_rows, total - row_begin);
    SampleChunk<T, Index>(exec, g, d, input, offsets, mask, row_begin, rows,
                          buffers.cols);

    // output[rows, group's filters] =
    //     cols[rows, group's part] x kernel[:, group's filters]
    TiledGemm<Acc, Acc, T, T, false, false, false> gemm;
    gemm.m = rows;
    gemm.n = g.filters_per_group();
    gemm.k = g.taps() * g.channels_per_group();
    gemm.a = buffers.cols;
    gemm.lda = width;
    gemm.a_batch = gemm.k;
    gemm.b = kernel;
    gemm.ldb = g.filters;
    gemm.b_batch = gemm.n;
    gemm.c = output + row_begin * g.filters;
    gemm.ldc = g.filters;
    gemm.c_batch = gemm.n;
    gemm.bias = bias;
    gemm.bias_batch = gemm.n;
    gemm.batches = g.groups;
    RunGemm(exec, gemm);
  }
}

// The input half of a chunk's backward pass: its column gradients
// cols_grad = out_grad x kernel^T, then from them the offset and mask gradients and
// the input gradient (summed into input_sum).
template <typename T, typename Index, typename Exec>
void BackwardInputHalf(const Exec& exec, const DeformConvGeometry& g, const Dims<Index>& d,
                       const T* input, const T* offsets, const T* mask, const T* kernel,
                       const T* chunk_grad, int64_t row_begin, int64_t rows,
                       const BackwardScratch<T>& buffers, T* offsets_grad, T* mask_grad,
                       typename AccumulatorOf<T>::type* input_sum) {
  using Acc = typename AccumulatorOf<T>::type;
  const int64_t width = g.taps() * g.in_channels;

  // cols_grad[rows, group's part] = out_grad[rows, group's filters] x
  // kernel[:, group's filters]^T.
  {
    TiledGemm<Acc, T, T, Acc, false, true, false> gemm;
    gemm.m = rows;
    gemm.n = g.taps() * g.channels_per_group();
    gemm.k = g.filters_per_group();
    gemm.a = chunk_grad;
    gemm.lda = g.filters;
    gemm.a_batch = gemm.k;
    gemm.b = kernel;
    gemm.ldb = g.filters;
    gemm.b_batch = gemm.k;
    gemm.c = buffers.cols_grad;
    gemm.ldc = width;
    gemm.c_batch = gemm.n;
    gemm.batches = g.groups;
    RunGemm(exec, gemm);
  }

  // Offset and mask gradients, one sampling point per work item.
  CoordinateGradients<T, Acc, Index> coordinates;
  coordinates.d = d;
  coordinates.input = input;
  coordinates.offsets = offsets;
  coordinates.mask = mask;
  coordinates.cols_grad = buffers.cols_grad;
  coordinates.row_begin = static_cast<Index>(row_begin);
  coordinates.offsets_grad = offsets_grad;
  coordinates.mask_grad = mask_grad;
  exec.template ForEach<Index>(rows * g.deformable_groups * g.taps(), coordinates);

  // Input gradient, one column element per work item.
  InputGradient<T, Acc, Index> scatter;
  scatter.d = d;
  scatter.offsets = offsets;
  scatter.mask = mask;
  scatter.cols_grad = buffers.cols_grad;
  scatter.row_begin = static_cast<Index>(row_begin);
  scatter.input_grad = input_sum;
  exec.template ForEach<Index>(rows * width, scatter);
}

// The kernel half of a chunk's backward pass: its columns, as in the forward pass,
// then kernel_sum += cols^T x out_grad and bias_sum += the column sums of out_grad.
template <typename T, typename Index, typename Exec>
void BackwardKernelHalf(const Exec& exec, const DeformConvGeometry& g,
                        const Dims<Index>& d, const DeformConvTuning& tuning,
                        const T* input, const T* offsets, const T* mask,
                        const T* chunk_grad, int64_t row_begin, int64_t rows,
                        const BackwardScratch<T>& buffers,
                        typename AccumulatorOf<T>::type* kernel_sum,
                        typename AccumulatorOf<T>::type* bias_sum) {
  using Acc = typename AccumulatorOf<T>::type;
  const int64_t width = g.taps() * g.in_channels;
  SampleChunk<T, Index>(exec, g, d, input, offsets, mask, row_begin, rows, buffers.cols);

  // kernel_grad[:, group's filters] += cols[rows, group's part]^T x
  // out_grad[rows, group's filters].
  {
    TiledGemm<Acc, Acc, T, Acc, true, false, true> gemm;
    gemm.m = g.taps() * g.channels_per_group();
    gemm.n = g.filters_per_group();
    gemm.k = rows;
    gemm.a = buffers.cols;
    gemm.lda = width;
    gemm.a_batch = gemm.m;
    gemm.b = chunk_grad;
    gemm.ldb = g.filters;
    gemm.b_batch = gemm.n;
    gemm.c = kernel_sum;
    gemm.ldc = g.filters;
    gemm.c_batch = gemm.n;
    gemm.batches = g.groups;
    RunGemm(exec, gemm, tuning.split_k_rows);
  }

  BiasGradient<T, Acc, Index> bias;
  bias.output_grad = chunk_grad;
  bias.rows = static_cast<Index>(rows);
  bias.filters = static_cast<Index>(g.filters);
  bias.bias_grad = bias_sum;
  exec.template ForEach<Index>((rows + kBiasRows - 1) / kBiasRows * g.filters, bias);
}

template <typename Index, typename T, typename Exec>
void Backward(const Exec& exec, const DeformConvGeometry& g,
              const DeformConvTuning& tuning, const T* input, const T* offsets,
              const T* mask, const T* kernel, const T* output_grad, T* input_grad,
              T* offsets_grad, T* mask_grad, T* kernel_grad, T* bias_grad,
              void* scratch) {
  using Acc = typename AccumulatorOf<T>::type;
  ScratchLayout layout(scratch);
  const BackwardScratch<T> buffers(g, tuning, &layout);
  const int64_t total = TotalRows(g);
  const Dims<Index> d = MakeDims<Index>(g);
  const int64_t input_size = g.batch * g.in_height * g.in_width * g.in_channels;
  const int64_t kernel_size = g.taps() * g.channels_per_group() * g.filters;

  const bool input_grads = input_grad != nullptr;
  const bool kernel_grads = kernel_grad != nullptr;
  Acc* input_sum = SumTarget(input_grad, buffers.input_grad);
  Acc* kernel_sum = SumTarget(kernel_grad, buffers.kernel_grad);
  Acc* bias_sum = SumTarget(bias_grad, buffers.bias_grad);
  if (input_grads) exec.Zero(input_sum, input_size * sizeof(Acc));
  if (kernel_grads) {
    exec.Zero(kernel_sum, kernel_size * sizeof(Acc));
    exec.Zero(bias_sum, g.filters * sizeof(Acc));
  }

  for (int64_t row_begin = 0; row_begin < total; row_begin += buffers.chunk_rows) {
    const int64_t rows = std::min(buffers.chunk_rows, total - row_begin);
    const T* chunk_grad = output_grad + row_begin * g.filters;

    if (input_grads) {
      BackwardInputHalf<T, Index>(exec, g, d, input, offsets, mask, kernel, chunk_grad,
                                  row_begin, rows, buffers, offsets_grad, mask_grad,
                                  input_sum);
    }
    if (kernel_grads) {
      BackwardKernelHalf<T, Index>(exec, g, d, tuning, input, offsets, mask, chunk_grad,
                                   row_begin, rows, buffers, kernel_sum, bias_sum);
    }
  }

  if constexpr (!kIsAccumulator<T>) {
    if (input_grads) {
      exec.template ForEach<Index>(input_size,
                                   StoreConverted<T, Acc, Index>{input_sum, input_grad});
    }
    if (kernel_grads) {
      exec.template ForEach<Index>(kernel_size,
                                   StoreConverted<T, Acc, Index>{kernel_sum, kernel_grad});
      exec.template ForEach<Index>(g.filters,
                                   StoreConverted<T, Acc, Index>{bias_sum, bias_grad});
    }
  }
}

}  // namespace deform_conv_internal

template <typename T>
size_t DeformConvForwardScratchBytes(const DeformConvGeometry& g,
                                     const DeformConvTuning& tuning = {}) {
  ScratchLayout layout;
  deform_conv_internal::ForwardScratch<T> buffers(g, tuning, &layout);
  return layout.size();
}

template <typename T>
size_t DeformConvBackwardScratchBytes(const DeformConvGeometry& g,
                                      const DeformConvTuning& tuning = {}) {
  ScratchLayout layout;
  deform_conv_internal::BackwardScratch<T> buffers(g, tuning, &layout);
  return layout.size();
}

template <typename T, typename Exec>
void DeformConvForward(const Exec& exec, const DeformConvGeometry& g,
                       const DeformConvTuning& tuning, const T* input, const T* offsets,
                       const T* mask, const T* kernel, const T* bias, T* output,
                       void* scratch) {
  namespace internal = deform_conv_internal;
  const int64_t largest = internal::LargestIndex(g, internal::ChunkRows(g, tuning));
  if (exec.NeedsWideIndex(largest)) {
    internal::Forward<int64_t>(exec, g, tuning, input, offsets, mask, kernel, bias,
                               output, scratch);
  } else {
    internal::Forward<int32_t>(exec, g, tuning, input, offsets, mask, kernel, bias,
                               output, scratch);
  }
}

template <typename T, typename Exec>
void DeformConvBackward(const Exec& exec, const DeformConvGeometry& g,
                        const DeformConvTuning& tuning, const T* input, const T* offsets,
                        const T* mask, const T* kernel, const T* output_grad,
                        T* input_grad, T* offsets_grad, T* mask_grad, T* kernel_grad,
                        T* bias_grad, void* scratch) {
  namespace internal = deform_conv_internal;
  const int64_t largest = internal::LargestIndex(g, internal::ChunkRows(g, tuning));
  if (exec.NeedsWideIndex(largest)) {
    internal::Backward<int64_t>(exec, g, tuning, input, offsets, mask, kernel,
                                output_grad, input_grad, offsets_grad, mask_grad,
                                kernel_grad, bias_grad, scratch);
  } else {
    internal::Backward<int32_t>(exec, g, tuning, input, offsets, mask, kernel,
                                output_grad, input_grad, offsets_grad, mask_grad,
                                kernel_grad, bias_grad, scratch);
  }
}

}  // namespace gpu
}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_DEFORM_CONV_CUH_
