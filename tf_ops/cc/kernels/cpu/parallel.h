// How the CPU kernels share work out over the op's intra-op thread pool (the
// Eigen::ThreadPoolDevice TensorFlow hands to the functors). Every parallel loop of
// the CPU kernels runs through ParallelFor.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_PARALLEL_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_PARALLEL_H_

#include <algorithm>
#include <cstdint>

#define EIGEN_USE_THREADS
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {

// The threads of the device's pool (at least one).
inline int64_t ThreadCount(const Eigen::ThreadPoolDevice& device) {
  return std::max<int64_t>(1, device.numThreads());
}

// Runs fn(begin, end) on ranges that cover [0, n), in parallel. The pool cuts [0, n)
// into ranges from `cycles_per_item`, the estimated compute cost of one item: cheap
// items are run in few long ranges, costly ones in many.
template <typename Fn>
void ParallelFor(const Eigen::ThreadPoolDevice& device, int64_t n, double cycles_per_item,
                 const Fn& fn) {
  device.parallelFor(n, Eigen::TensorOpCost(0, 0, cycles_per_item),
                     [&](Eigen::Index begin, Eigen::Index end) { fn(begin, end); });
}

// Runs fn(begin, end) on [0, n) cut into blocks of `block` (the last one may be
// smaller), the blocks in parallel.
template <typename Fn>
void ForBlocks(const Eigen::ThreadPoolDevice& device, int64_t n, int64_t block,
               const Fn& fn) {
  const int64_t blocks = (n + block - 1) / block;
  // A cost far above the pool's threshold: every block becomes its own task.
  ParallelFor(device, blocks, 1e9, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      fn(b * block, std::min(n, (b + 1) * block));
    }
  });
}

// `n` split evenly over the threads: the block size giving one block per thread.
inline int64_t PerThread(const Eigen::ThreadPoolDevice& device, int64_t n) {
  const int64_t threads = ThreadCount(device);
  return std::max<int64_t>(1, (n + threads - 1) / threads);
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_PARALLEL_H_
