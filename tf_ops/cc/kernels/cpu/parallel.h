// How the CPU kernels share work out over the op's intra-op thread pool (the
// Eigen::ThreadPoolDevice TensorFlow hands to the functors). Every parallel loop of
// the CPU kernels runs through ForBlocks or ParallelFor.
//
// The calling thread always works too: it runs one worker itself and the pool the
// others, and the workers take blocks from a shared counter. So a loop starts at once
// even while the pool's threads are still waking up (or busy with another op's work),
// and a late worker finds fewer blocks left, instead of the caller waiting for it.
// (Eigen's own parallelFor hands the whole loop to the pool, and waits, whenever it
// cuts more blocks than there are threads.)
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_PARALLEL_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>

#define EIGEN_USE_THREADS
#include "unsupported/Eigen/CXX11/Tensor"

namespace keras_dcn {

// The threads of the device's pool (at least one).
inline int64_t ThreadCount(const Eigen::ThreadPoolDevice& device) {
  return std::max<int64_t>(1, device.numThreads());
}

// Runs fn(begin, end) on [0, n) cut into blocks of `block` (the last one may be
// smaller), the blocks in parallel, on at most `workers` threads (the caller's
// included; at most the pool's thread count).
template <typename Fn>
void ForBlocks(const Eigen::ThreadPoolDevice& device, int64_t n, int64_t block,
               const Fn& fn, int64_t workers) {
  const int64_t blocks = (n + block - 1) / block;
  workers = std::min({workers, blocks, ThreadCount(device)});
  std::atomic<int64_t> next(0);
  const auto work = [&]() {
    for (int64_t b = next.fetch_add(1); b < blocks; b = next.fetch_add(1)) {
      fn(b * block, std::min(n, (b + 1) * block));
    }
  };
  if (workers <= 1) {
    work();
    return;
  }
  // No more items than threads, each costing far above the pool's threshold: Eigen
  // runs one item in the calling thread and schedules the others, one each.
  device.parallelFor(workers, Eigen::TensorOpCost(0, 0, 1e9),
                     [&](Eigen::Index first, Eigen::Index last) {
    for (Eigen::Index w = first; w < last; ++w) work();
  });
}

// ForBlocks on all the pool's threads.
template <typename Fn>
void ForBlocks(const Eigen::ThreadPoolDevice& device, int64_t n, int64_t block,
               const Fn& fn) {
  ForBlocks(device, n, block, fn, ThreadCount(device));
}

// Runs fn(begin, end) on ranges that cover [0, n), in parallel. From
// `cycles_per_item`, the estimated compute cost of one item, Eigen's cost model picks
// how many threads the loop is worth (cheap loops run in the calling thread alone);
// [0, n) is cut into four blocks per thread, so uneven items still spread evenly.
template <typename Fn>
void ParallelFor(const Eigen::ThreadPoolDevice& device, int64_t n, double cycles_per_item,
                 const Fn& fn) {
  if (n <= 0) return;
  const int64_t workers = Eigen::TensorCostModel<Eigen::ThreadPoolDevice>::numThreads(
      static_cast<double>(n), Eigen::TensorOpCost(0, 0, cycles_per_item),
      static_cast<int>(ThreadCount(device)));
  if (workers <= 1) {
    fn(0, n);
    return;
  }
  ForBlocks(device, n, std::max<int64_t>(1, (n + 4 * workers - 1) / (4 * workers)), fn,
            workers);
}

// `n` split evenly over the threads: the block size giving one block per thread.
inline int64_t PerThread(const Eigen::ThreadPoolDevice& device, int64_t n) {
  const int64_t threads = ThreadCount(device);
  return std::max<int64_t>(1, (n + threads - 1) / threads);
}

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_PARALLEL_H_
