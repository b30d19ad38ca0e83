// AVX-512 micro-kernels of cpu_gemm.h.
//
// A tile is up to kTileRows rows of C by one panel (kPanelColumns = two vectors of 16
// floats): 2 * kTileRows accumulators stay in registers for the whole depth. Every
// step loads the panel's two B vectors once and, per row, broadcasts A's value (or
// A's bfloat16 pair) and multiplies it into both. A is read where the caller wrote it
// (a row of A is a row of that block, or a column for the transposed product), so it
// is not copied; B was packed once.
//
// The micro-kernels and the packers carry their instruction set in a target
// attribute, so the library builds for any x86-64 CPU and uses them only where
// CpuGemmIsaInUse() allows.
#include "tf_ops/cc/kernels/cpu/cpu_gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
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
    pairs_ = NewAlignedArray<uint32_t>(panels() * ((depth + 1) / 2) * kPanelColumns);
  } else {
    floats_ = NewAlignedArray<float>(panels() * depth * kPanelColumns);
  }
}

#if defined(__x86_64__)

namespace {

// The mask of the 16-bit lanes of a panel's first `width` (at most 32) columns.
__mmask32 ColumnMask16(int64_t width) {
  return width >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << width) - 1u);
}

// The byte offsets j * stride_bytes of lanes j < 16, for gathers of one value from
// each of 16 columns; false where they do not fit in 32 bits.
bool ColumnOffsets(int64_t stride_bytes, int32_t lanes[16]) {
  if (stride_bytes <= 0 || 31 * stride_bytes > INT32_MAX) return false;
  for (int j = 0; j < 16; ++j) lanes[j] = static_cast<int32_t>(j * stride_bytes);
  return true;
}

// Rows [0, rows) of a panel of 32-bit words gathered from its columns: word r of
// column j lies `column_bytes` * j + 4 * r bytes after `columns`, `offsets` holds
// ColumnOffsets(column_bytes), and the lanes outside the `low` / `high` masks (the
// panel's first / last 16 columns) are 0. Inlined into the packers, whose dispatch
// covers it.
__attribute__((target("avx512f"), always_inline)) inline void GatherPanelRows(
    const char* columns, int64_t column_bytes, __m512i offsets, __mmask16 low,
    __mmask16 high, int64_t rows, uint32_t* out) {
  const char* upper = columns + 16 * column_bytes;
  for (int64_t r = 0; r < rows; ++r) {
    _mm512_storeu_si512(out + r * kPanelColumns,
                        _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), low, offsets,
                                                    columns + 4 * r, 1));
    _mm512_storeu_si512(out + r * kPanelColumns + 16,
                        _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), high, offsets,
                                                    upper + 4 * r, 1));
  }
}

}  // namespace

// Rows of B that are contiguous (n_stride 1) are copied with masked loads. Columns
// that are contiguous (k_stride 1, the transposed kernel) are gathered, one value of
// each of the panel's columns per row of the panel: consecutive rows read the same
// cache lines of the columns, which stay in L1 for 16 rows of floats (a scalar walk
// down one column after the other would reload them, as a power-of-two n_stride
// puts a panel's columns in a few cache sets).
__attribute__((target("avx512f"))) void PackedMatrix::PackFloat(
    const float* source, int64_t k_stride, int64_t n_stride, int64_t first,
    int64_t last) {
  alignas(64) int32_t lanes[16] = {};
  const bool gather =
      n_stride != 1 && k_stride == 1 && ColumnOffsets(n_stride * 4, lanes);
  const __m512i offsets = _mm512_load_si512(lanes);
  for (int64_t panel = first; panel < last; ++panel) {
    float* out = floats_.get() + panel * depth_ * kPanelColumns;
    const int64_t n0 = panel * kPanelColumns;
    const int64_t width = std::min<int64_t>(kPanelColumns, columns_ - n0);
    __mmask16 low, high;
    PanelMasks(width, &low, &high);
    if (n_stride == 1) {
      for (int64_t k = 0; k < depth_; ++k) {
        const float* row = source + k * k_stride + n0;
        _mm512_storeu_ps(out + k * kPanelColumns, _mm512_maskz_loadu_ps(low, row));
        _mm512_storeu_ps(out + k * kPanelColumns + 16,
                         _mm512_maskz_loadu_ps(high, row + 16));
      }
    } else if (gather) {
      GatherPanelRows(reinterpret_cast<const char*>(source + n0 * n_stride), n_stride * 4,
                      offsets, low, high, depth_, reinterpret_cast<uint32_t*>(out));
    } else {  // offsets beyond the gathers' 32 bits
      for (int64_t k = 0; k < depth_; ++k) {
        for (int64_t j = 0; j < kPanelColumns; ++j) {
          out[k * kPanelColumns + j] =
              j < width ? source[k * k_stride + (n0 + j) * n_stride] : 0.0f;
        }
      }
    }
  }
}

// bfloat16 pairs: with n_stride 1, rows 2p and 2p + 1 are two contiguous runs of 32
// values, interleaved with one permutation into each half of the panel's row p; with
// k_stride 1, a column's pair is one 32-bit word of the source, gathered as floats are
// above. A missing last odd row is 0, and is not read.
__attribute__((target("avx512f,avx512bw"))) void PackedMatrix::PackBfloat16(
    const uint16_t* source, int64_t k_stride, int64_t n_stride, int64_t first,
    int64_t last) {
  alignas(64) static constexpr uint16_t kInterleaveLow[32] = {
      0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
      8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static constexpr uint16_t kInterleaveHigh[32] = {
      16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
      24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i interleave_low = _mm512_load_si512(kInterleaveLow);
  const __m512i interleave_high = _mm512_load_si512(kInterleaveHigh);
  const int64_t pairs = (depth_ + 1) / 2;
  const int64_t whole_pairs = depth_ / 2;
  alignas(64) int32_t lanes[16] = {};
  const bool gather =
      n_stride != 1 && k_stride == 1 && ColumnOffsets(n_stride * 2, lanes);
  const __m512i offsets = _mm512_load_si512(lanes);
  for (int64_t panel = first; panel < last; ++panel) {
    uint32_t* out = pairs_.get() + panel * pairs * kPanelColumns;
    const int64_t n0 = panel * kPanelColumns;
    const int64_t width = std::min<int64_t>(kPanelColumns, columns_ - n0);
    __mmask16 low, high;
    PanelMasks(width, &low, &high);
    if (n_stride == 1) {
      const __mmask32 mask = ColumnMask16(width);
      for (int64_t p = 0; p < pairs; ++p) {
        const uint16_t* even = source + 2 * p * k_stride + n0;
        const __m512i even_row = _mm512_maskz_loadu_epi16(mask, even);
        const __m512i odd_row = p < whole_pairs
                                    ? _mm512_maskz_loadu_epi16(mask, even + k_stride)
                                    : _mm512_setzero_si512();
        _mm512_storeu_si512(out + p * kPanelColumns,
                            _mm512_permutex2var_epi16(even_row, interleave_low, odd_row));
        _mm512_storeu_si512(
            out + p * kPanelColumns + 16,
            _mm512_permutex2var_epi16(even_row, interleave_high, odd_row));
      }
      continue;
    }
    // The gathers take the whole pairs; a lone last row, and sources beyond the
    // gathers' offsets, go value by value.
    const int64_t gathered = gather ? whole_pairs : 0;
    if (gather) {
      GatherPanelRows(reinterpret_cast<const char*>(source + n0 * n_stride), n_stride * 2,
                      offsets, low, high, whole_pairs, out);
    }
    for (int64_t p = gathered; p < pairs; ++p) {
      for (int64_t j = 0; j < kPanelColumns; ++j) {
        const uint16_t* even = source + 2 * p * k_stride + (n0 + j) * n_stride;
        const uint32_t high_half = j < width && p < whole_pairs ? even[k_stride] : 0;
        out[p * kPanelColumns + j] = j < width ? even[0] | (high_half << 16) : 0;
      }
    }
  }
}

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

void PackedMatrix::PackFloat(const float*, int64_t, int64_t, int64_t, int64_t) {
  std::abort();
}

void PackedMatrix::PackBfloat16(const uint16_t*, int64_t, int64_t, int64_t, int64_t) {
  std::abort();
}

#endif  // defined(__x86_64__)

}  // namespace keras_dcn

// The ISA in use as a number (CpuGemmIsa), for Python (keras_dcn._library.cpu_isa).
extern "C" int keras_dcn_cpu_gemm_isa() {
  return static_cast<int>(keras_dcn::CpuGemmIsaInUse());
}
