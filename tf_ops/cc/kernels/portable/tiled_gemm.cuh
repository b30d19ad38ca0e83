// A batched, shared-memory tiled matrix product for the CUDA kernels:
//   C[b] = op(A[b]) * op(B[b]) (+ bias[b], broadcast over rows)     (store mode)
//   C[b] += op(A[b]) * op(B[b])                                        (atomic mode)
// with op(X) = X or X^T, row-major operands of any element type, and sums in Acc.
//
// This header does not depend on TensorFlow. A block of kThreads threads computes
// one kTileM x kTileN tile of C; each thread owns kRowsPerThread x kColsPerThread
// of its elements. The block walks K in steps of kTileK: all threads load a slice
// of A and B into shared memory (Load), wait, multiply it into their accumulators
// (Multiply), wait, and finally write (Store). The three phases are DCN_HOST_DEVICE
// functions of the block and thread index, so the host executor in gpu_utils.cuh can
// run the very same code phase by phase.
//
// Atomic mode may split K over grid.z ("split-K"): each block adds the product of one
// slice of K, which keeps a long, thin product (the kernel gradient: K is the number
// of output pixels) spread over enough blocks.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_TILED_GEMM_CUH_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_TILED_GEMM_CUH_

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "tf_ops/cc/kernels/portable/gpu_utils.cuh"

namespace keras_dcn {
namespace gpu {

// CUDA's limit on grid.z.
constexpr int64_t kMaxGridZ = 65535;

template <typename Acc, typename TA, typename TB, typename TC, bool kTransA, bool kTransB,
          bool kAtomic>
struct TiledGemm {
  static constexpr int kTileM = 128;
  static constexpr int kTileN = 64;
  static constexpr int kTileK = 16;
  static constexpr int kThreadRows = 16;  // threads along M
  static constexpr int kThreadCols = 16;  // threads along N
  static constexpr int kThreads = kThreadRows * kThreadCols;
  static constexpr int kRowsPerThread = kTileM / kThreadRows;
  static constexpr int kColsPerThread = kTileN / kThreadCols;
  static constexpr int kLoadsA = kTileM * kTileK / kThreads;
  static constexpr int kLoadsB = kTileN * kTileK / kThreads;
  static constexpr bool kAtomicMode = kAtomic;
  static_assert(kTileM % kThreadRows == 0 && kTileN % kThreadCols == 0,
                "tiles must split evenly over the threads");
  static_assert(kLoadsA * kThreads == kTileM * kTileK &&
                    kLoadsB * kThreads == kTileN * kTileK,
                "tile loads must split evenly over the threads");
  static_assert(kAtomic ? std::is_same<TC, Acc>::value : true,
                "atomic mode adds into an Acc buffer");

  // Sizes of one product: op(A) is m x k, op(B) is k x n, C is m x n.
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  // Operands: element (r, c) of X (before op) is x[r * ldx + c]; product b of the
  // batch uses x + b * x_batch.
  const TA* a = nullptr;
  int64_t lda = 0;
  int64_t a_batch = 0;
  const TB* b = nullptr;
  int64_t ldb = 0;
  int64_t b_batch = 0;
  TC* c = nullptr;
  int64_t ldc = 0;
  int64_t c_batch = 0;
  // Store mode only, may be null: bias[b * bias_batch + col] is added to column col.
  const TC* bias = nullptr;
  int64_t bias_batch = 0;
  int64_t batches = 1;
  // Atomic mode only: the length of the K slice of one block (a multiple of kTileK),
  // or 0 for all of K.
  int64_t k_slice = 0;

  struct Shared {
    // +1: rows written across threads land in different banks.
    Acc a[kTileK][kTileM + 1];
    Acc b[kTileK][kTileN + 1];
  };

  struct Accumulators {
    Acc v[kRowsPerThread][kColsPerThread];
    DCN_HOST_DEVICE void Clear() {
      for (int i = 0; i < kRowsPerThread; ++i) {
        for (int j = 0; j < kColsPerThread; ++j) v[i][j] = Acc(0);
      }
    }
  };

  DCN_HOST_DEVICE int64_t tiles_m() const { return (m + kTileM - 1) / kTileM; }
  DCN_HOST_DEVICE int64_t tiles_n() const { return (n + kTileN - 1) / kTileN; }
  DCN_HOST_DEVICE int64_t slices() const {
    return (k_slice > 0 && k > 0) ? (k + k_slice - 1) / k_slice : 1;
  }
  // Blocks along x (tiles of C, M fastest) and z (batch entry, then K slice).
  DCN_HOST_DEVICE int64_t grid_x() const { return tiles_m() * tiles_n(); }
  DCN_HOST_DEVICE int64_t grid_z() const { return batches * slices(); }

  // The part of K that blocks at grid index z sum over.
  DCN_HOST_DEVICE void KRange(int64_t z, int64_t* begin, int64_t* end) const {
    if (k_slice > 0) {
      const int64_t slice = z % slices();
      *begin = slice * k_slice;
      *end = std::min(k, *begin + k_slice);
    } else {
      *begin = 0;
      *end = k;
    }
  }

  // Phase 1: thread t of block (x, z) loads its share of the K slice [k0, k0 +
  // kTileK) of A and B (zeros past the matrix or past k_end) into shared memory.
  DCN_HOST_DEVICE void Load(int64_t x, int64_t z, int t, int64_t k0, int64_t k_end,
                            Shared* s) const {
    const int64_t tm = x % tiles_m();
    const int64_t tn = x / tiles_m();
    const int64_t batch = z / slices();
    const TA* a_ = a + batch * a_batch;
    const TB* b_ = b + batch * b_batch;
    for (int r = 0; r < kLoadsA; ++r) {
      const int e = t + r * kThreads;
      // Consecutive threads read consecutive addresses in either layout.
      const int mm = kTransA ? e % kTileM : e / kTileK;
      const int kk = kTransA ? e / kTileM : e % kTileK;
      const int64_t gm = tm * kTileM + mm;
      const int64_t gk = k0 + kk;
      Acc v = Acc(0);
      if (gm < m && gk < k_end) {
        v = Convert<Acc>(kTransA ? a_[gk * lda + gm] : a_[gm * lda + gk]);
      }
      s->a[kk][mm] = v;
    }
    for (int r = 0; r < kLoadsB; ++r) {
      const int e = t + r * kThreads;
      const int nn = kTransB ? e / kTileK : e % kTileN;
      const int kk = kTransB ? e % kTileK : e / kTileN;
      const int64_t gn = tn * kTileN + nn;
      const int64_t gk = k0 + kk;
      Acc v = Acc(0);
      if (gn < n && gk < k_end) {
        v = Convert<Acc>(kTransB ? b_[gn * ldb + gk] : b_[gk * ldb + gn]);
      }
      s->b[kk][nn] = v;
    }
  }

  // Phase 2: thread t adds the loaded slice's product to its elements, rows
  // ty + i * kThreadRows and columns tx + j * kThreadCols of the tile.
  DCN_HOST_DEVICE void Multiply(int t, const Shared& s, Accumulators* acc) const {
    const int ty = t / kThreadCols;
    const int tx = t % kThreadCols;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int kk = 0; kk < kTileK; ++kk) {
      Acc av[kRowsPerThread];
      Acc bv[kColsPerThread];
      for (int i = 0; i < kRowsPerThread; ++i) av[i] = s.a[kk][ty + i * kThreadRows];
      for (int j = 0; j < kColsPerThread; ++j) bv[j] = s.b[kk][tx + j * kThreadCols];
      for (int i = 0; i < kRowsPerThread; ++i) {
        for (int j = 0; j < kColsPerThread; ++j) acc->v[i][j] += av[i] * bv[j];
      }
    }
  }

  // Phase 3: thread t writes (or adds) its elements of the tile.
  DCN_HOST_DEVICE void Store(int64_t x, int64_t z, int t, const Accumulators& acc) const {
    const int64_t tm = x % tiles_m();
    const int64_t tn = x / tiles_m();
    const int64_t batch = z / slices();
    const int ty = t / kThreadCols;
    const int tx = t % kThreadCols;
    TC* c_ = c + batch * c_batch;
    const TC* bias_ = bias == nullptr ? nullptr : bias + batch * bias_batch;
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int64_t gm = tm * kTileM + ty + i * kThreadRows;
      if (gm >= m) continue;
      for (int j = 0; j < kColsPerThread; ++j) {
        const int64_t gn = tn * kTileN + tx + j * kThreadCols;
        if (gn >= n) continue;
        if constexpr (kAtomic) {
          AtomicAdd(&c_[gm * ldc + gn], acc.v[i][j]);
        } else {
          Acc v = acc.v[i][j];
          if (bias_ != nullptr) v += Convert<Acc>(bias_[gn]);
          c_[gm * ldc + gn] = Convert<TC>(v);
        }
      }
    }
  }

  // The products [first, first + count) of the batch as a product of their own.
  TiledGemm Part(int64_t first, int64_t count) const {
    TiledGemm part = *this;
    part.a += first * a_batch;
    part.b += first * b_batch;
    part.c += first * c_batch;
    if (bias != nullptr) part.bias += first * bias_batch;
    part.batches = count;
    return part;
  }
};

// Runs `gemm` with `exec`. In atomic mode K is cut into slices of about
// `split_k` (0: no split); launches are cut so that grid.z stays within CUDA's limit.
template <typename Exec, typename G>
void RunGemm(const Exec& exec, G gemm, int64_t split_k = 0) {
  if (gemm.m <= 0 || gemm.n <= 0 || gemm.batches <= 0) return;
  gemm.k_slice = 0;
  if (G::kAtomicMode) {
    if (gemm.k <= 0) return;  // nothing to add
    if (split_k > 0 && split_k < gemm.k) {
      int64_t slice = std::max<int64_t>(split_k, (gemm.k + kMaxGridZ - 1) / kMaxGridZ);
      slice = (slice + G::kTileK - 1) / G::kTileK * G::kTileK;
      gemm.k_slice = slice;
    }
  }
  const int64_t per_launch = std::max<int64_t>(1, kMaxGridZ / gemm.slices());
  for (int64_t first = 0; first < gemm.batches; first += per_launch) {
    exec.Gemm(gemm.Part(first, std::min(per_launch, gemm.batches - first)));
  }
}

}  // namespace gpu
}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_TILED_GEMM_CUH_
