#include "fusedrnn/threads.hpp"

#include <atomic>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#define FUSEDRNN_HAVE_MXCSR 1
#endif

namespace fusedrnn {

namespace {
int default_threads() {
  const unsigned int n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}
std::atomic<int> g_num_threads{default_threads()};
}  // namespace

int get_num_threads() { return g_num_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n: expected an integer >= 1, got " + std::to_string(n));
  g_num_threads.store(n, std::memory_order_relaxed);
}

void run_pair(bool concurrent, const std::function<void()>& a, const std::function<void()>& b) {
  if (!concurrent || get_num_threads() < 2) {
    a();
    b();
    return;
  }
  std::exception_ptr b_error;
  std::thread worker([&] {
    try {
      ScopedFlushDenormals flush;
      b();
    } catch (...) {
      b_error = std::current_exception();
    }
  });
  std::exception_ptr a_error;
  try {
    a();
  } catch (...) {
    a_error = std::current_exception();
  }
  worker.join();
  if (a_error) std::rethrow_exception(a_error);
  if (b_error) std::rethrow_exception(b_error);
}

#ifdef FUSEDRNN_HAVE_MXCSR
ScopedFlushDenormals::ScopedFlushDenormals() : saved_(_mm_getcsr()) {
  _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
}
ScopedFlushDenormals::~ScopedFlushDenormals() { _mm_setcsr(saved_); }
#else
ScopedFlushDenormals::ScopedFlushDenormals() = default;
ScopedFlushDenormals::~ScopedFlushDenormals() = default;
#endif

}  // namespace fusedrnn
