// Scratch buffers of the CPU kernels that each parallel task holds while it runs: a
// task leases one, preferably one its thread used before (still in that thread's
// cache). The pool holds as many buffers as tasks ever ran at once, so its memory is
// one buffer per thread, whatever the work's size.
#ifndef KERAS_DCN_TF_OPS_CC_KERNELS_CPU_SCRATCH_POOL_H_
#define KERAS_DCN_TF_OPS_CC_KERNELS_CPU_SCRATCH_POOL_H_

#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "tf_ops/cc/kernels/cpu/aligned_array.h"

namespace keras_dcn {

template <typename V>
class ScratchPool {
 public:
  // Buffers of `size` values (uninitialised).
  explicit ScratchPool(int64_t size) : size_(size) {}

  // A buffer that no other lease holds, given back when the lease ends.
  class Lease {
   public:
    explicit Lease(ScratchPool* pool) : pool_(pool), buffer_(pool->Take()) {}
    ~Lease() { pool_->Give(std::move(buffer_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    V* data() const { return buffer_.get(); }

   private:
    ScratchPool* pool_;
    AlignedArray<V> buffer_;
  };

 private:
  // A free buffer this thread gave back (the likeliest to be in its cache), else
  // any free one, else a new one.
  AlignedArray<V> Take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        size_t pick = free_.size() - 1;
        for (size_t i = 0; i < free_.size(); ++i) {
          if (free_[i].first == std::this_thread::get_id()) pick = i;
        }
        AlignedArray<V> buffer = std::move(free_[pick].second);
        free_.erase(free_.begin() + pick);
        return buffer;
      }
    }
    return NewAlignedArray<V>(size_);
  }

  void Give(AlignedArray<V> buffer) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace_back(std::this_thread::get_id(), std::move(buffer));
  }

  const int64_t size_;
  std::mutex mutex_;
  std::vector<std::pair<std::thread::id, AlignedArray<V>>> free_;
};

}  // namespace keras_dcn

#endif  // KERAS_DCN_TF_OPS_CC_KERNELS_CPU_SCRATCH_POOL_H_
