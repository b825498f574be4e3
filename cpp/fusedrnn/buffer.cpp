#include "fusedrnn/buffer.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FUSEDRNN_HAS_ATFORK 1
#endif

namespace fusedrnn {

OutOfMemory::OutOfMemory(std::size_t bytes) : bytes_(bytes) {
  std::snprintf(message_, sizeof(message_), "could not allocate a work buffer of %zu bytes (%.1f GiB)", bytes,
                static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

namespace detail {

namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kMaxBlocks = 16;
constexpr std::size_t kMaxCachedBytes = std::size_t(256) << 20;  // 256 MiB
constexpr std::size_t kMinCachedBytes = std::size_t(64) << 10;   // smaller blocks: the small cache
// Small blocks are cheap to allocate, but a call that runs one time step asks for several: a step at a
// time spent a quarter of its call in malloc and free. Up to kMaxSmallBlocks of them are kept.
constexpr std::size_t kMaxSmallBlocks = 32;

struct Block {
  void* data;
  std::size_t bytes;  // the block's real capacity
};

struct Cache {
  std::mutex mutex;
  std::vector<Block> blocks;
  std::size_t total = 0;
};

Cache& cache() {
  static Cache* instance = new Cache;  // never destroyed: buffers may outlive static destruction
  return *instance;
}

Cache& small_cache() {
  static Cache* instance = new Cache;  // never destroyed, as above
  return *instance;
}

// fork() keeps only the forking thread: a cache locked by another thread at that moment would stay
// locked in the child. The caches are held across fork() (their critical sections are short) and
// released on both sides.
void lock_caches() {
  cache().mutex.lock();
  small_cache().mutex.lock();
}
void unlock_caches() {
  small_cache().mutex.unlock();
  cache().mutex.unlock();
}
[[maybe_unused]] const bool g_fork_handlers_installed = [] {
#ifdef FUSEDRNN_HAS_ATFORK
  pthread_atfork(lock_caches, unlock_caches, unlock_caches);
#endif
  return true;
}();

// Takes from `blocks` the smallest block that fits `bytes` without wasting more than half of it, or
// returns nullptr.
void* take_fitting(Cache& c, std::size_t bytes) {
  std::size_t best = c.blocks.size();
  for (std::size_t k = 0; k < c.blocks.size(); ++k)
    if (c.blocks[k].bytes >= bytes && c.blocks[k].bytes <= 2 * bytes &&
        (best == c.blocks.size() || c.blocks[k].bytes < c.blocks[best].bytes))
      best = k;
  if (best == c.blocks.size()) return nullptr;
  void* data = c.blocks[best].data;
  c.total -= c.blocks[best].bytes;
  c.blocks.erase(c.blocks.begin() + static_cast<std::ptrdiff_t>(best));  // keeps the oldest first
  return data;
}

std::size_t round_up(std::size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

}  // namespace

void* cache_take(std::size_t bytes) {
  if (bytes > static_cast<std::size_t>(-1) - kAlignment) throw OutOfMemory(bytes);
  bytes = round_up(bytes);
  {
    Cache& c = bytes >= kMinCachedBytes ? cache() : small_cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (void* data = take_fitting(c, bytes)) return data;
  }
  void* data = std::aligned_alloc(kAlignment, bytes);
  if (!data) throw OutOfMemory(bytes);
  return data;
}

void cache_give(void* block, std::size_t bytes) {
  bytes = round_up(bytes);
  if (bytes >= kMinCachedBytes && bytes <= kMaxCachedBytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    // Make room by dropping the oldest blocks.
    while (!c.blocks.empty() && (c.blocks.size() >= kMaxBlocks || c.total + bytes > kMaxCachedBytes)) {
      std::free(c.blocks.front().data);
      c.total -= c.blocks.front().bytes;
      c.blocks.erase(c.blocks.begin());
    }
    c.blocks.push_back({block, bytes});
    c.total += bytes;
    return;
  }
  if (bytes < kMinCachedBytes) {
    Cache& c = small_cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.blocks.size() < kMaxSmallBlocks) {
      c.blocks.push_back({block, bytes});
      c.total += bytes;
      return;
    }
  }
  std::free(block);
}

}  // namespace detail
}  // namespace fusedrnn
