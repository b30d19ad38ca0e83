// Matrix products of row panels for the CPU kernels: C = init + A x B (or C += A^T x B),
// where A is a block that a thread has just written (row-major, any row stride) and B
// is packed once. AVX-512 micro-kernels, chosen at run time, compute float products
// (vfmadd) and bfloat16 products (AVX512_BF16 vdpbf16ps: pairs of bfloat16 products
// summed into float accumulators); callers run their own code where
// CpuGemmIsaInUse() says the CPU has neither. No TensorFlow dependency.
//
// The environment variable KERAS_DCN_MAX_CPU_ISA caps the instruction set used:
// "generic" (no micro-kernels), "avx512" (AVX-512 F, BW and VL: float only) or
// "avx512_bf16" (the default when the CPU has it).
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_CPU_GEMM_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_CPU_GEMM_H_

#include <cstdint>

#include "tf_ops/cc/kernels/cpu/aligned_array.h"

namespace keras_dcn {

enum class CpuGemmIsa { kGeneric = 0, kAvx512 = 1, kAvx512Bf16 = 2 };

// The instruction set of this CPU the micro-kernels use, capped by
// KERAS_DCN_MAX_CPU_ISA (read once).
CpuGemmIsa CpuGemmIsaInUse();

// Columns of one panel of a packed B: two 16-float vectors.
constexpr int64_t kPanelColumns = 32;
// Rows of C a micro-kernel computes at once (callers that split rows between threads
// best split at multiples of it).
constexpr int64_t kTileRows = 14;

// B of C = A x B, [depth, columns], packed for the micro-kernels: panels of
// kPanelColumns columns (the last one padded with zeros). A float panel holds
// [depth][kPanelColumns] floats; a bfloat16 panel [ceil(depth / 2)][kPanelColumns]
// pairs (the bfloat16 bits of rows 2p and 2p + 1 of a column, in the low and high half
// of a 32-bit word; a missing last row is 0).
class PackedMatrix {
 public:
  PackedMatrix(int64_t depth, int64_t columns, bool bfloat16_pairs);

  int64_t depth() const { return depth_; }
  int64_t columns() const { return columns_; }
  int64_t panels() const { return (columns_ + kPanelColumns - 1) / kPanelColumns; }
  bool bfloat16_pairs() const { return bfloat16_pairs_; }

  // Packs panels [first, last) of B[k, n] = source[k * k_stride + n * n_stride] as
  // floats. The ISA in use must be at least kAvx512.
  void PackFloat(const float* source, int64_t k_stride, int64_t n_stride, int64_t first,
                 int64_t last);
  // Packs bfloat16 panels [first, last); `source` holds bfloat16 bit patterns. The ISA
  // in use must be kAvx512Bf16.
  void PackBfloat16(const uint16_t* source, int64_t k_stride, int64_t n_stride,
                    int64_t first, int64_t last);

  const float* float_panel(int64_t panel) const {
    return floats_.get() + panel * depth_ * kPanelColumns;
  }
  const uint32_t* pair_panel(int64_t panel) const {
    return pairs_.get() + panel * ((depth_ + 1) / 2) * kPanelColumns;
  }

 private:
  int64_t depth_, columns_;
  bool bfloat16_pairs_;
  AlignedArray<float> floats_;
  AlignedArray<uint32_t> pairs_;
};

// C[i, :columns] = init + A[i, :depth] x B for i < rows, with A[i, k] = a[i * lda + k]
// and C[i, n] = c[i * ldc + n]; `init` holds `columns` values added to every row, or is
// null. B must be packed as floats (for float A) or bfloat16 pairs (for bfloat16 A,
// given as bit patterns); the ISA in use must be at least kAvx512 (kAvx512Bf16).
void MultiplyRows(const float* a, int64_t lda, int64_t rows, const PackedMatrix& b,
                  const float* init, float* c, int64_t ldc);
void MultiplyRows(const uint16_t* a, int64_t lda, int64_t rows, const PackedMatrix& b,
                  const float* init, float* c, int64_t ldc);

// C[i, :columns] += A^T[i, :count] x B[first : first + count] for i < rows, with
// A^T[i, k] = a[k * lda + i]: the product of a transposed row-major A (a [count, rows]
// block, row stride lda) with `count` rows of B from row `first` on. B must be packed
// as floats; the ISA in use must be at least kAvx512.
void AddTransposedProduct(const float* a, int64_t lda, int64_t rows,
                          const PackedMatrix& b, int64_t first, int64_t count, float* c,
                          int64_t ldc);

// The same product with A in bfloat16 row pairs (PackRowPairs): A^T[i, 2p] and
// A^T[i, 2p + 1] are the low and high half of a_pairs[p * lda + i]. B must be packed
// as bfloat16 pairs, and `first` must be even; the ISA in use must be kAvx512Bf16.
void AddTransposedProduct(const uint32_t* a_pairs, int64_t lda, int64_t rows,
                          const PackedMatrix& b, int64_t first, int64_t count, float* c,
                          int64_t ldc);

// pairs[p * width + j] = the bfloat16 bits of a[2p, j] (low half) and a[2p + 1, j]
// (high half) for 2p < rows and j < width, where a[r, j] = a[r * lda + j]: the float
// rows of A turned into the bfloat16 pairs that the transposed product reads. Rounded
// to nearest even, as vcvtne2ps2bf16 does (denormals to zero, as the products read
// them anyway); a missing last row is 0. The ISA in use must be kAvx512Bf16.
void PackRowPairs(const float* a, int64_t lda, int64_t rows, int64_t width,
                  uint32_t* pairs);

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_CPU_GEMM_H_
