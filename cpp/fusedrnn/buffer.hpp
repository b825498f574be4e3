// Uninitialized, 64-byte aligned buffers that come from, and return to, a small process-wide cache.
//
// A call allocates its workspaces and a training forward its tape; freshly mapped memory costs a
// page fault per 4 KiB on first touch (15% of a training step, measured), and the C library gives
// large blocks back to the system on free. Recycling the last few blocks keeps the steady state
// free of both.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace fusedrnn {

// Thrown when a buffer cannot be had. Unlike std::bad_alloc, it says how large the buffer was.
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::size_t bytes);
  const char* what() const noexcept override { return message_; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_;
  char message_[160];
};

namespace detail {
void* cache_take(std::size_t bytes);             // a block of at least `bytes`, 64-byte aligned (or OutOfMemory)
void cache_give(void* block, std::size_t bytes);  // back to the cache (or freed)
}  // namespace detail

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t count) { allocate(count); }
  ~Buffer() { release(); }
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      release();
      swap(other);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Makes room for `count` values; the contents are unspecified. A buffer already holding exactly
  // `count` values keeps its block (a stream's workspaces are sized again at every step).
  void allocate(std::size_t count) {
    if (count == size_ && data_) return;
    release();
    if (count == 0) return;
    if (count > static_cast<std::size_t>(-1) / sizeof(T)) throw OutOfMemory(static_cast<std::size_t>(-1));
    data_ = static_cast<T*>(detail::cache_take(count * sizeof(T)));
    size_ = count;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  void release() {
    if (data_) detail::cache_give(data_, size_ * sizeof(T));
    data_ = nullptr;
    size_ = 0;
  }
  void swap(Buffer& other) {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace fusedrnn
