// AVX-512 micro-kernels of cpu_gemm.h.
//
// A tile is up to kTileRows rows of C by one panel (kPanelColumns = two vectors of 16
// floats): 2 * kTileRows accumulators stay in registers for the whole depth. Every
// step loads the panel's two B vectors once and, per row, broadcasts A's value (or
// A's bfloat16 pair) and multiplies it into both. A is read where the caller wrote it
// (a row of A is a row of that block, or a column for the transposed product), so it
// is not copied; B was packed once.
//
// The micro-kernels carry their instruction set in a target attribute, so the library
// builds for any x86-64 CPU and uses them only where CpuGemmIsaInUse() allows.
#include "tf_ops/cc/kernels/cpu/cpu_gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstdlib>
#include <cstring>
#include <string>

namespace keras_dcn {
namespace {

CpuGemmIsa DetectIsa() {
  CpuGemmIsa isa = CpuGemmIsa::kGeneric;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    isa = __builtin_cpu_supports("avx512bf16") ? CpuGemmIsa::kAvx512Bf16
                                               : CpuGemmIsa::kAvx512;
  }
#endif
  const char* cap = std::getenv("KERAS_DCN_MAX_CPU_ISA");
  if (cap == nullptr || *cap == '\0') return isa;
  const std::string name(cap);
  CpuGemmIsa most = isa;  // unknown names are rejected when Python loads the library
  if (name == "generic") most = CpuGemmIsa::kGeneric;
  if (name == "avx512") most = CpuGemmIsa::kAvx512;
  return static_cast<int>(most) < static_cast<int>(isa) ? most : isa;
}

#if defined(__x86_64__)

// Masks of the valid columns of a panel that starts `width` columns before the end.
inline void PanelMasks(int64_t width, __mmask16* low, __mmask16* high) {
  const auto bits = [](int64_t n) {
    return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u);
  };
  *low = bits(std::max<int64_t>(0, std::min<int64_t>(16, width)));
  *high = bits(std::max<int64_t>(0, std::min<int64_t>(16, width - 16)));
}

// A tile's accumulators: 2 * Rows vectors, kept in registers.
template <int Rows>
struct Accumulators {
  __m512 low[Rows], high[Rows];

  // C's tile itself (to add to it), or `init` (or 0) in every row.
  __attribute__((target("avx512f"), always_inline)) inline void Start(
      const float* init, bool accumulate, __mmask16 low_mask, __mmask16 high_mask,
      const float* c, int64_t ldc) {
    const __m512 init_low =
        init ? _mm512_maskz_loadu_ps(low_mask, init) : _mm512_setzero_ps();
    const __m512 init_high =
        init ? _mm512_maskz_loadu_ps(high_mask, init + 16) : _mm512_setzero_ps();
    for (int i = 0; i < Rows; ++i) {
      low[i] = accumulate ? _mm512_maskz_loadu_ps(low_mask, c + i * ldc) : init_low;
      high[i] =
          accumulate ? _mm512_maskz_loadu_ps(high_mask, c + i * ldc + 16) : init_high;
    }
  }

  __attribute__((target("avx512f"), always_inline)) inline void Store(__mmask16 low_mask,
                                                                      __mmask16 high_mask,
                                                                      float* c,
                                                                      int64_t ldc) const {
    for (int i = 0; i < Rows; ++i) {
      _mm512_mask_storeu_ps(c + i * ldc, low_mask, low[i]);
      _mm512_mask_storeu_ps(c + i * ldc + 16, high_mask, high[i]);
    }
  }
};

// The float micro-kernel. Row i of A is a[i * lda + k] (k < depth), or a[k * lda + i]
// when TransposedA.
template <bool TransposedA>
struct FloatTile {
  template <int Rows>
  __attribute__((target("avx512f"))) static void Run(const float* a, int64_t lda,
                                                     const float* b, int64_t depth,
                                                     const float* init, bool accumulate,
                                                     __mmask16 low, __mmask16 high,
                                                     float* c, int64_t ldc) {
    Accumulators<Rows> acc;
    acc.Start(init, accumulate, low, high, c, ldc);
    for (int64_t k = 0; k < depth; ++k) {
      const __m512 b_low = _mm512_loadu_ps(b + k * kPanelColumns);
      const __m512 b_high = _mm512_loadu_ps(b + k * kPanelColumns + 16);
#pragma GCC unroll 16
      for (int i = 0; i < Rows; ++i) {
        const __m512 value =
            _mm512_set1_ps(TransposedA ? a[k * lda + i] : a[i * lda + k]);
        acc.low[i] = _mm512_fmadd_ps(value, b_low, acc.low[i]);
        acc.high[i] = _mm512_fmadd_ps(value, b_high, acc.high[i]);
      }
    }
    acc.Store(low, high, c, ldc);
  }
};

// The bfloat16 micro-kernel: row i of A is a[i * lda + k], read in pairs; or, when
// TransposedA, the pairs of A^T[i, 2p] and A^T[i, 2p + 1] are a[2 * (p * lda + i)]
// and the element after it (PackRowPairs).
template <bool TransposedA>
struct Bfloat16Tile {
  template <int Rows>
  __attribute__((target("avx512f,avx512bf16"))) static void Run(
      const uint16_t* a, int64_t lda, const uint32_t* b, int64_t depth, const float* init,
      bool accumulate, __mmask16 low, __mmask16 high, float* c, int64_t ldc) {
    Accumulators<Rows> acc;
    acc.Start(init, accumulate, low, high, c, ldc);
    for (int64_t p = 0; p < (depth + 1) / 2; ++p) {
      const __m512bh b_low = (__m512bh)_mm512_loadu_si512(b + p * kPanelColumns);
      const __m512bh b_high = (__m512bh)_mm512_loadu_si512(b + p * kPanelColumns + 16);
      // Row pairs hold a last odd row's partner as 0; so do B's packed pairs.
      if (TransposedA || 2 * p + 1 < depth) {
#pragma GCC unroll 16
        for (int i = 0; i < Rows; ++i) {
          uint32_t pair;
          std::memcpy(&pair, TransposedA ? a + 2 * (p * lda + i) : a + i * lda + 2 * p,
                      sizeof(pair));
          const __m512bh value = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
          acc.low[i] = _mm512_dpbf16_ps(acc.low[i], value, b_low);
          acc.high[i] = _mm512_dpbf16_ps(acc.high[i], value, b_high);
        }
      } else {
        // The last pair of an odd depth holds A's last element alone: the element
        // after it is not read (it may lie outside A), and B's packed partner is 0.
        for (int i = 0; i < Rows; ++i) {
          const uint32_t pair = a[i * lda + 2 * p];
          const __m512bh value = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
          acc.low[i] = _mm512_dpbf16_ps(acc.low[i], value, b_low);
          acc.high[i] = _mm512_dpbf16_ps(acc.high[i], value, b_high);
        }
      }
    }
    acc.Store(low, high, c, ldc);
  }
};

// Calls Tile::Run<rows>(...) for a run-time rows in [1, Rows].
template <typename Tile, int Rows, typename... Args>
void TileOfRows(int rows, Args... args) {
  if constexpr (Rows > 1) {
    if (rows < Rows) return TileOfRows<Tile, Rows - 1>(rows, args...);
  }
  Tile::template Run<Rows>(args...);
}

// Every panel of B, for all rows in tiles: B's panel stays in cache across the rows.
// The rows are cut into the fewest tiles of at most kTileRows, all of about the same
// size (227 rows: 13 and 14 rows, not 16 tiles of 14 and one of 3, whose few
// accumulators cannot keep the FMA units busy). A tile of rows starts `a_row_step`
// elements of A after the previous one's start.
template <typename Tile, typename A, typename Panel>
void MultiplyPanels(const A* a, int64_t lda, int64_t a_row_step, int64_t rows,
                    const PackedMatrix& b, const Panel& panel_of, int64_t depth,
                    const float* init, bool accumulate, float* c, int64_t ldc) {
  const int64_t tiles = (rows + kTileRows - 1) / kTileRows;
  for (int64_t panel = 0; panel < b.panels(); ++panel) {
    const int64_t n0 = panel * kPanelColumns;
    __mmask16 low, high;
    PanelMasks(b.columns() - n0, &low, &high);
    const float* panel_init = init ? init + n0 : nullptr;
    for (int64_t tile = 0, i = 0; tile < tiles; ++tile) {
      const int64_t left = tiles - tile;
      const int tile_rows = static_cast<int>((rows - i + left - 1) / left);
      TileOfRows<Tile, kTileRows>(tile_rows, a + i * a_row_step, lda, panel_of(panel),
                                  depth, panel_init, accumulate, low, high,
                                  c + i * ldc + n0, ldc);
      i += tile_rows;
    }
  }
}

#endif  // defined(__x86_64__)

}  // namespace

CpuGemmIsa CpuGemmIsaInUse() {
  static const CpuGemmIsa isa = DetectIsa();
  return isa;
}

PackedMatrix::PackedMatrix(int64_t depth, int64_t columns, bool bfloat16_pairs)
    : depth_(depth), columns_(columns), bfloat16_pairs_(bfloat16_pairs) {
  // Not initialised: every panel is packed before it is read.
  if (bfloat16_pairs) {
    pairs_.reset(new uint32_t[panels() * ((depth + 1) / 2) * kPanelColumns]);
  } else {
    floats_.reset(new float[panels() * depth * kPanelColumns]);
  }
}

void PackedMatrix::PackBfloat16(const uint16_t* source, int64_t k_stride,
                                int64_t n_stride, int64_t first, int64_t last) {
  const int64_t pairs = (depth_ + 1) / 2;
  // Where the columns are not contiguous, kPackDepthStep rows of depth of a column at
  // a time (see PackFloat); else one pair of rows at a time.
  const int64_t pair_step = n_stride == 1 ? 1 : kPackDepthStep / 2;
  for (int64_t panel = first; panel < last; ++panel) {
    uint32_t* out = pairs_.get() + panel * pairs * kPanelColumns;
    const int64_t n0 = panel * kPanelColumns;
    const int64_t width = std::min<int64_t>(kPanelColumns, columns_ - n0);
    for (int64_t p0 = 0; p0 < pairs; p0 += pair_step) {
      const int64_t p_end = std::min(pairs, p0 + pair_step);
      for (int64_t j = 0; j < width; ++j) {
        const uint16_t* column = source + (n0 + j) * n_stride;
        for (int64_t p = p0; p < p_end; ++p) {
          const uint16_t* even = column + 2 * p * k_stride;
          const uint32_t high = 2 * p + 1 < depth_ ? even[k_stride] : 0;
          out[p * kPanelColumns + j] = even[0] | (high << 16);
        }
      }
      for (int64_t p = p0; p < p_end; ++p) {
        for (int64_t j = width; j < kPanelColumns; ++j) out[p * kPanelColumns + j] = 0;
      }
    }
  }
}

#if defined(__x86_64__)

void MultiplyRows(const float* a, int64_t lda, int64_t rows, const PackedMatrix& b,
                  const float* init, float* c, int64_t ldc) {
  MultiplyPanels<FloatTile<false>>(
      a, lda, lda, rows, b, [&](int64_t panel) { return b.float_panel(panel); },
      b.depth(), init, /*accumulate=*/false, c, ldc);
}

void AddTransposedProduct(const float* a, int64_t lda, int64_t rows,
                          const PackedMatrix& b, int64_t b_first, int64_t b_count, float* c,
                          int64_t ldc) {
  MultiplyPanels<FloatTile<true>>(
      a, lda, 1, rows, b,
      [&](int64_t panel) { return b.float_panel(panel) + b_first * kPanelColumns; },
      b_count, nullptr, /*accumulate=*/true, c, ldc);
}

void MultiplyRows(const uint16_t* a, int64_t lda, int64_t rows, const PackedMatrix& b,
                  const float* init, float* c, int64_t ldc) {
  MultiplyPanels<Bfloat16Tile<false>>(
      a, lda, lda, rows, b, [&](int64_t panel) { return b.pair_panel(panel); },
      b.depth(), init, /*accumulate=*/false, c, ldc);
}

void AddTransposedProduct(const uint32_t* a_pairs, int64_t lda, int64_t rows,
                          const PackedMatrix& b, int64_t b_first, int64_t b_count, float* c,
                          int64_t ldc) {
  MultiplyPanels<Bfloat16Tile<true>>(
      reinterpret_cast<const uint16_t*>(a_pairs), lda, 2, rows, b,
      [&](int64_t panel) { return b.pair_panel(panel) + b_first / 2 * kPanelColumns; },
      b_count, nullptr, /*accumulate=*/true, c, ldc);
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) void PackRowPairs(
    const float* a, int64_t lda, int64_t rows, int64_t width, uint32_t* pairs) {
  // vcvtne2ps2bf16 puts the even row's 16 values in the low half of a vector and the
  // odd row's in the high half; this permutation interleaves them into pairs.
  alignas(64) static constexpr uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i interleave = _mm512_load_si512(kInterleave);
  for (int64_t p = 0; 2 * p < rows; ++p) {
    const float* even = a + 2 * p * lda;
    const bool has_odd = 2 * p + 1 < rows;
    uint32_t* out = pairs + p * width;
    for (int64_t j = 0; j < width; j += 16) {
      const __mmask16 mask =
          width - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (width - j)) - 1u);
      const __m512 low = _mm512_maskz_loadu_ps(mask, even + j);
      const __m512 high =
          has_odd ? _mm512_maskz_loadu_ps(mask, even + lda + j) : _mm512_setzero_ps();
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(high, low);
      _mm512_mask_storeu_epi32(out + j, mask, _mm512_permutexvar_epi16(interleave, both));
    }
  }
}

#else  // Elsewhere the ISA in use is kGeneric, and callers never get here.

void MultiplyRows(const float*, int64_t, int64_t, const PackedMatrix&, const float*,
                  float*, int64_t) {
  std::abort();
}

void AddTransposedProduct(const float*, int64_t, int64_t, const PackedMatrix&, int64_t,
                          int64_t, float*, int64_t) {
  std::abort();
}

void MultiplyRows(const uint16_t*, int64_t, int64_t, const PackedMatrix&, const float*,
                  float*, int64_t) {
  std::abort();
}

void AddTransposedProduct(const uint32_t*, int64_t, int64_t, const PackedMatrix&, int64_t,
                          int64_t, float*, int64_t) {
  std::abort();
}

void PackRowPairs(const float*, int64_t, int64_t, int64_t, uint32_t*) { std::abort(); }

#endif  // defined(__x86_64__)

}  // namespace keras_dcn

// The ISA in use as a number (CpuGemmIsa), for Python (keras_dcn._library.cpu_isa).
extern "C" int keras_dcn_cpu_gemm_isa() {
  return static_cast<int>(keras_dcn::CpuGemmIsaInUse());
}
