// The AVX-512 channel loops of channel_loops.h. Every function carries its
// instruction set in a target attribute, so the library builds for any x86-64 CPU;
// a vector holds 16 channels, and the last, partial vector of a run is read and
// written under a mask, so no loop touches a channel past n.
#include "tf_ops/cc/kernels/cpu/channel_loops.h"

#include <cstdlib>

#include "tf_ops/cc/kernels/cpu/cpu_gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace keras_dcn {

bool ChannelLoopsInUse() {
  static const bool in_use = CpuGemmIsaInUse() != CpuGemmIsa::kGeneric;
  return in_use;
}

#if defined(__x86_64__)

#define DCN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
// The helpers of the loops pass vectors: they are always inlined into them.
#define DCN_AVX512_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline

namespace {

constexpr int64_t kLanes = 16;

// The lanes of a vector a step reads and writes: all 16 (Full), or those under
// `mask` (the last, partial vector of a run; the others read 0). Full vectors take
// plain loads and stores, which are faster than masked ones.
template <bool Full>
struct Lanes {
  __mmask16 mask;
};

DCN_AVX512_INLINE Lanes<false> LastLanes(int64_t left) {
  return {static_cast<__mmask16>((1u << left) - 1u)};
}

// 16 values as floats.
template <bool Full>
DCN_AVX512_INLINE __m512 Load(const float* p, Lanes<Full> lanes) {
  if constexpr (Full) return _mm512_loadu_ps(p);
  return _mm512_maskz_loadu_ps(lanes.mask, p);
}
template <bool Full>
DCN_AVX512_INLINE __m256i Load16Bits(const void* p, Lanes<Full> lanes) {
  if constexpr (Full) return _mm256_loadu_si256(static_cast<const __m256i*>(p));
  return _mm256_maskz_loadu_epi16(lanes.mask, p);
}
template <bool Full>
DCN_AVX512_INLINE __m512 Load(const HalfBits* p, Lanes<Full> lanes) {
  return _mm512_cvtph_ps(Load16Bits(p, lanes));
}
template <bool Full>
DCN_AVX512_INLINE __m512 Load(const Bfloat16Bits* p, Lanes<Full> lanes) {
  const __m512i wide = _mm512_cvtepu16_epi32(Load16Bits(p, lanes));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

template <bool Full>
DCN_AVX512_INLINE void Store16Bits(__m256i v, Lanes<Full> lanes, void* p) {
  if constexpr (Full) {
    _mm256_storeu_si256(static_cast<__m256i*>(p), v);
  } else {
    _mm256_mask_storeu_epi16(p, lanes.mask, v);
  }
}
template <bool Full>
DCN_AVX512_INLINE void Store(__m512 v, Lanes<Full> lanes, float* p) {
  if constexpr (Full) {
    _mm512_storeu_ps(p, v);
  } else {
    _mm512_mask_storeu_ps(p, lanes.mask, v);
  }
}
template <bool Full>
DCN_AVX512_INLINE void Store(__m512 v, Lanes<Full> lanes, HalfBits* p) {
  Store16Bits(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), lanes, p);
}
// Rounded to nearest even; a NaN becomes the quiet NaN of its sign, as Eigen's
// conversion does.
template <bool Full>
DCN_AVX512_INLINE void Store(__m512 v, Lanes<Full> lanes, Bfloat16Bits* p) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m512i quiet = _mm512_or_si512(
      _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x8000)),
      _mm512_set1_epi32(0x7FC0));
  rounded = _mm512_mask_mov_epi32(rounded, nan, quiet);
  Store16Bits(_mm512_cvtepi32_epi16(rounded), lanes, p);
}

// One vector of each loop below, at channel c. (The loops hold the neighbours' offsets
// in locals: read through the pointer, they would be reloaded after every store.)
template <int Count, bool Full, typename Src, typename Dst>
DCN_AVX512_INLINE void SampleStep(const Src* src, const int64_t* offset, const __m512* w,
                                  int64_t c, Lanes<Full> lanes, Dst* dst) {
  // Two chains of fused multiply-adds, added at the end: a shorter dependency chain.
  __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
  for (int q = 0; q < Count; q += 2) {
    even = _mm512_fmadd_ps(w[q], Load(src + offset[q] + c, lanes), even);
    if (q + 1 < Count) {
      odd = _mm512_fmadd_ps(w[q + 1], Load(src + offset[q + 1] + c, lanes), odd);
    }
  }
  Store(_mm512_add_ps(even, odd), lanes, dst + c);
}

template <int Count, bool Full, typename Src>
DCN_AVX512_INLINE void DotStep(const float* grad, const Src* src, const int64_t* offset,
                               int64_t c, Lanes<Full> lanes, __m512* sum) {
  const __m512 g = Load(grad + c, lanes);
  for (int q = 0; q < Count; ++q) {
    sum[q] = _mm512_fmadd_ps(g, Load(src + offset[q] + c, lanes), sum[q]);
  }
}

template <int Count, bool Full>
DCN_AVX512_INLINE void ScatterStep(const float* grad, const int64_t* offset,
                                   const __m512* w, int64_t c, Lanes<Full> lanes,
                                   float* dst) {
  const __m512 g = Load(grad + c, lanes);
  for (int q = 0; q < Count; ++q) {
    float* d = dst + offset[q] + c;
    Store(_mm512_fmadd_ps(w[q], g, Load(d, lanes)), lanes, d);
  }
}

// The loops: every full vector of the n channels, then the partial one, if any.
template <int Count, typename Src, typename Dst>
DCN_AVX512 void Sample(const Src* src, const int64_t* offsets, const float* weight,
                       int64_t n, Dst* dst) {
  __m512 w[Count > 0 ? Count : 1];
  int64_t offset[Count > 0 ? Count : 1];
  for (int q = 0; q < Count; ++q) {
    w[q] = _mm512_set1_ps(weight[q]);
    offset[q] = offsets[q];
  }
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    SampleStep<Count>(src, offset, w, c, Lanes<true>{}, dst);
  }
  if (c < n) SampleStep<Count>(src, offset, w, c, LastLanes(n - c), dst);
}

template <int Count, typename Src>
DCN_AVX512 void Dot(const float* grad, const Src* src, const int64_t* offset, int64_t n,
                    float* dot) {
  __m512 sum[Count];
  for (int q = 0; q < Count; ++q) sum[q] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    DotStep<Count>(grad, src, offset, c, Lanes<true>{}, sum);
  }
  if (c < n) DotStep<Count>(grad, src, offset, c, LastLanes(n - c), sum);
  for (int q = 0; q < Count; ++q) dot[q] = _mm512_reduce_add_ps(sum[q]);
}

template <int Count>
DCN_AVX512 void Scatter(const float* grad, const int64_t* offsets, const float* weight,
                        int64_t n, float* dst) {
  __m512 w[Count];
  int64_t offset[Count];
  for (int q = 0; q < Count; ++q) {
    w[q] = _mm512_set1_ps(weight[q]);
    offset[q] = offsets[q];
  }
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    ScatterStep<Count>(grad, offset, w, c, Lanes<true>{}, dst);
  }
  if (c < n) ScatterStep<Count>(grad, offset, w, c, LastLanes(n - c), dst);
}

template <typename Src, typename Dst>
DCN_AVX512 void Convert(const Src* src, int64_t n, Dst* dst) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Store(Load(src + i, Lanes<true>{}), Lanes<true>{}, dst + i);
  }
  if (i < n) Store(Load(src + i, LastLanes(n - i)), LastLanes(n - i), dst + i);
}

}  // namespace

template <typename Src, typename Dst>
void SampleChannels(const Src* src, const int64_t* offset, const float* weight, int count,
                    int64_t n, Dst* dst) {
  switch (count) {
    case 4: return Sample<4>(src, offset, weight, n, dst);
    case 3: return Sample<3>(src, offset, weight, n, dst);
    case 2: return Sample<2>(src, offset, weight, n, dst);
    case 1: return Sample<1>(src, offset, weight, n, dst);
    default: return Sample<0>(src, offset, weight, n, dst);
  }
}

template <typename Src>
void DotChannels(const float* grad, const Src* src, const int64_t* offset, int count,
                 int64_t n, float* dot) {
  switch (count) {
    case 4: return Dot<4>(grad, src, offset, n, dot);
    case 3: return Dot<3>(grad, src, offset, n, dot);
    case 2: return Dot<2>(grad, src, offset, n, dot);
    case 1: return Dot<1>(grad, src, offset, n, dot);
    default: return;
  }
}

void ScatterChannels(const float* grad, const int64_t* offset, const float* weight,
                     int count, int64_t n, float* dst) {
  switch (count) {
    case 4: return Scatter<4>(grad, offset, weight, n, dst);
    case 3: return Scatter<3>(grad, offset, weight, n, dst);
    case 2: return Scatter<2>(grad, offset, weight, n, dst);
    case 1: return Scatter<1>(grad, offset, weight, n, dst);
    default: return;
  }
}

template <typename Src>
void ConvertToFloat(const Src* src, int64_t n, float* dst) {
  Convert(src, n, dst);
}

template <typename Dst>
void ConvertFromFloat(const float* src, int64_t n, Dst* dst) {
  Convert(src, n, dst);
}

#undef DCN_AVX512
#undef DCN_AVX512_INLINE

#else  // Elsewhere ChannelLoopsInUse() is false, and callers never get here.

template <typename Src, typename Dst>
void SampleChannels(const Src*, const int64_t*, const float*, int, int64_t, Dst*) {
  std::abort();
}
template <typename Src>
void DotChannels(const float*, const Src*, const int64_t*, int, int64_t, float*) {
  std::abort();
}
void ScatterChannels(const float*, const int64_t*, const float*, int, int64_t, float*) {
  std::abort();
}
template <typename Src>
void ConvertToFloat(const Src*, int64_t, float*) {
  std::abort();
}
template <typename Dst>
void ConvertFromFloat(const float*, int64_t, Dst*) {
  std::abort();
}

#endif  // defined(__x86_64__)

template void SampleChannels(const float*, const int64_t*, const float*, int, int64_t,
                             float*);
template void SampleChannels(const HalfBits*, const int64_t*, const float*, int, int64_t,
                             float*);
template void SampleChannels(const Bfloat16Bits*, const int64_t*, const float*, int,
                             int64_t, float*);
template void SampleChannels(const Bfloat16Bits*, const int64_t*, const float*, int,
                             int64_t, Bfloat16Bits*);
template void DotChannels(const float*, const float*, const int64_t*, int, int64_t,
                          float*);
template void DotChannels(const float*, const HalfBits*, const int64_t*, int, int64_t,
                          float*);
template void DotChannels(const float*, const Bfloat16Bits*, const int64_t*, int, int64_t,
                          float*);
template void ConvertToFloat(const HalfBits*, int64_t, float*);
template void ConvertToFloat(const Bfloat16Bits*, int64_t, float*);
template void ConvertFromFloat(const float*, int64_t, HalfBits*);
template void ConvertFromFloat(const float*, int64_t, Bfloat16Bits*);

}  // namespace keras_dcn
