// Bilinear sampling with zero padding, shared by the CPU and CUDA kernels.
//
// This header does not depend on TensorFlow: it is plain C++ that nvcc can compile
// for the device as well as the host.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_BILINEAR_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_BILINEAR_H_

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DCN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DCN_HOST_DEVICE inline
#endif

namespace keras_dcn {

// The neighbours of a fractional point (y, x) of a 2-D map that lie inside the map,
// as element offsets into the map, with three sets of weights:
//   value(p)  = sum_i weight[i]   * p[offset[i]]
//   dvalue/dy = sum_i weight_y[i] * p[offset[i]]   (floor-based, right-hand derivative)
//   dvalue/dx = sum_i weight_x[i] * p[offset[i]]
// for i < count. Neighbours outside the map are left out (they read 0), so using a
// point never reads out of bounds and never touches a value it does not weigh.
template <typename Acc>
struct BilinearPoint {
  int count;
  int64_t offset[4];
  Acc weight[4];
  Acc weight_y[4];
  Acc weight_x[4];
};

// Fills `point` for the sample (y, x) of a map of `height` x `width` whose element
// (row, col) sits at `row * row_stride + col * col_stride`.
//
// A point at or beyond the open range -1 < y < height, -1 < x < width, or one that is
// not a number, gets count 0: it reads 0 and receives no gradient with respect to its
// coordinates. Returns whether the point has any neighbour.
template <typename Acc>
DCN_HOST_DEVICE bool SetupBilinear(Acc y, Acc x, int64_t height, int64_t width,
                                   int64_t row_stride, int64_t col_stride,
                                   BilinearPoint<Acc>* point) {
  point->count = 0;
  // Written so that NaN fails the test.
  if (!(y > Acc(-1) && y < Acc(height) && x > Acc(-1) && x < Acc(width))) {
    return false;
  }
  const Acc y_floor = floor(y);
  const Acc x_floor = floor(x);
  const int64_t y0 = static_cast<int64_t>(y_floor);
  const int64_t x0 = static_cast<int64_t>(x_floor);
  const Acc ly = y - y_floor;
  const Acc lx = x - x_floor;
  const Acc wy[2] = {Acc(1) - ly, ly};
  const Acc wx[2] = {Acc(1) - lx, lx};
  const Acc slope[2] = {Acc(-1), Acc(1)};

  for (int a = 0; a < 2; ++a) {
    const int64_t row = y0 + a;
    if (row < 0 || row >= height) continue;
    for (int b = 0; b < 2; ++b) {
      const int64_t col = x0 + b;
      if (col < 0 || col >= width) continue;
      const int i = point->count++;
      point->offset[i] = row * row_stride + col * col_stride;
      point->weight[i] = wy[a] * wx[b];
      point->weight_y[i] = slope[a] * wx[b];
      point->weight_x[i] = wy[a] * slope[b];
    }
  }
  return point->count > 0;
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_PORTABLE_BILINEAR_H_
