// The products of the DeformConv2D CPU kernels (deform_conv_cpu.cc) with the
// kernel: which code runs them on this CPU (ProductPath), and the kernel as their
// right-hand side (KernelOperand).
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_DEFORM_CONV_PRODUCTS_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_DEFORM_CONV_PRODUCTS_H_

#include <cstdint>
#include <type_traits>
#include <vector>

#define EIGEN_USE_THREADS
#include "tf_ops/cc/kernels/cpu/accumulation.h"
#include "tf_ops/cc/kernels/cpu/aligned_array.h"
#include "tf_ops/cc/kernels/cpu/cpu_gemm.h"
#include "tf_ops/cc/kernels/cpu/parallel.h"
#include "tf_ops/cc/kernels/portable/deform_conv.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {
namespace deform_conv_cpu {

// A row-major matrix in a plain buffer with a row stride, as an Eigen matrix.
template <typename Acc>
using RowMajorMap =
    Eigen::Map<Eigen::Matrix<Acc, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
               Eigen::OuterStride<>>;
template <typename Acc>
using ConstRowMajorMap =
    Eigen::Map<const Eigen::Matrix<Acc, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
               0, Eigen::OuterStride<>>;

// How the row products of T run: the float or bfloat16 micro-kernels of cpu_gemm.h
// where this CPU has them (bfloat16 products for bfloat16), Eigen's products
// otherwise (and for double).
enum class ProductPath { kEigen, kFloat, kBfloat16 };

// The path of T's products on this CPU.
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

  KernelOperand(const Eigen::ThreadPoolDevice& device, const DeformConvGeometry& g,
                const T* kernel, bool transposed)
      : path_(ProductPathFor<T>()),
        transposed_(transposed),
        filters_(g.filters),
        depth_(transposed ? g.filters_per_group() : g.taps() * g.channels_per_group()),
        width_(transposed ? g.taps() * g.channels_per_group() : g.filters_per_group()),
        kernel_acc_(kernel, path_ == ProductPath::kEigen
                                ? g.taps() * g.channels_per_group() * g.filters
                                : 0) {
    if (path_ == ProductPath::kEigen) return;
    // A half type on the float micro-kernels is converted to float once, on all
    // threads and vectorised, so the packing below only reorders floats.
    const int64_t size = g.taps() * g.channels_per_group() * g.filters;
    AlignedArray<Acc> converted;
    const Acc* kernel_floats = nullptr;
    if constexpr (!kIsAccumulator<T>) {
      if (path_ == ProductPath::kFloat) {
        converted = NewAlignedArray<Acc>(size);
        kernel_floats = InAccumulator<T>(device, kernel, size, converted.get());
      }
    }
    packed_.reserve(g.groups);
    for (int64_t group = 0; group < g.groups; ++group) {
      packed_.emplace_back(depth_, width_, path_ == ProductPath::kBfloat16);
      PackedMatrix& packed = packed_.back();
      const int64_t k_stride = transposed ? 1 : g.filters;
      const int64_t n_stride = transposed ? g.filters : 1;
      ForBlocks(device, packed.panels(), PerThread(device, packed.panels()),
                [&](int64_t first, int64_t last) {
        if constexpr (std::is_same<T, Eigen::bfloat16>::value) {
          if (packed.bfloat16_pairs()) {
            packed.PackBfloat16(
                reinterpret_cast<const uint16_t*>(kernel + group * g.filters_per_group()),
                k_stride, n_stride, first, last);
            return;
          }
        }
        if constexpr (std::is_same<Acc, float>::value) {
          const float* floats = std::is_same<T, float>::value
                                    ? reinterpret_cast<const float*>(kernel)
                                    : kernel_floats;
          packed.PackFloat(floats + group * g.filters_per_group(), k_stride, n_stride,
                           first, last);
        }
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
      MultiplyRows(reinterpret_cast<const uint16_t*>(a), lda, rows, packed_[group], init,
                   out, ldc);
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
      const ConstRowMajorMap<Acc> w(kernel_acc_.data() + group * kernel_cols, kernel_rows,
                                    kernel_cols, Eigen::OuterStride<>(filters_));
      if (transposed_) {
        out_map.noalias() = a_map * w.transpose();
      } else {
        out_map.noalias() = a_map * w;
      }
      if (init != nullptr) {
        out_map.rowwise() +=
            Eigen::Map<const Eigen::Matrix<Acc, 1, Eigen::Dynamic>>(init, width_);
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

}  // namespace deform_conv_cpu
}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_DEFORM_CONV_PRODUCTS_H_
