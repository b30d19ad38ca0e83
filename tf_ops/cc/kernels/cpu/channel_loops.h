// AVX-512 loops over a run of channels, the inner loops of the bilinear sampling of
// the CPU kernels: sampling (a weighted sum of up to four neighbours), the dot
// products of a gradient with each neighbour, the scatter of a gradient to the
// neighbours, and conversions between float and the 16-bit float types. They compute
// in float with fused multiply-adds, 16 channels at a time, whatever machine code
// the rest of the library was compiled for; callers run them only where
// ChannelLoopsInUse() says so (and their own portable loops elsewhere). No TensorFlow
// dependency.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_CHANNEL_LOOPS_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_CHANNEL_LOOPS_H_

#include <cstdint>

namespace keras_dcn {

// The bits of an IEEE binary16 value (Eigen::half) and of a bfloat16 value
// (Eigen::bfloat16): both are 16-bit types with the same layout.
struct HalfBits {
  uint16_t bits;
};
struct Bfloat16Bits {
  uint16_t bits;
};

// Whether the loops below may run: the CPU has AVX-512 (F, BW, VL) and
// KERAS_DCN_MAX_CPU_ISA allows it (cpu_gemm.h).
bool ChannelLoopsInUse();

// Channel loops over the neighbours of one bilinear point, for channels [0, n): the
// neighbour q (q < count <= 4) of channel c is src[offset[q] + c].
//
// Src (the input map) is float, HalfBits or Bfloat16Bits; Dst (a sampled column) is
// float or Bfloat16Bits (rounded to nearest even, as a static_cast to
// Eigen::bfloat16 rounds).

// dst[c] = sum_q weight[q] * neighbour q (0 when count is 0).
template <typename Src, typename Dst>
void SampleChannels(const Src* src, const int64_t* offset, const float* weight, int count,
                    int64_t n, Dst* dst);

// dot[q] = sum_c grad[c] * neighbour q, for q < count.
template <typename Src>
void DotChannels(const float* grad, const Src* src, const int64_t* offset, int count,
                 int64_t n, float* dot);

// dst[offset[q] + c] += weight[q] * grad[c] for every neighbour q.
void ScatterChannels(const float* grad, const int64_t* offset, const float* weight,
                     int count, int64_t n, float* dst);

// dst[i] = src[i] converted, for i < n (Src: HalfBits or Bfloat16Bits into float;
// float into Dst: HalfBits or Bfloat16Bits, rounded to nearest even).
template <typename Src>
void ConvertToFloat(const Src* src, int64_t n, float* dst);
template <typename Dst>
void ConvertFromFloat(const float* src, int64_t n, Dst* dst);

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_CHANNEL_LOOPS_H_
