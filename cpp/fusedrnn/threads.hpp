// Thread count, running independent pieces of work at once, and denormal flushing.
#pragma once

#include <functional>

namespace fusedrnn {

// The number of threads fusedrnn may use (>= 1). Defaults to the machine's hardware threads.
int get_num_threads();
void set_num_threads(int n);

// Runs a and b, on two threads when `concurrent` and the thread budget allows, else one after the
// other. An exception from either is rethrown here after both have finished.
void run_pair(bool concurrent, const std::function<void()>& a, const std::function<void()>& b);

// Flushes denormals to zero (FTZ and DAZ) for the lifetime of the object, on the current thread;
// denormal arithmetic is 10x to 30x slower and recurrent nets drift into it while training.
class ScopedFlushDenormals {
 public:
  ScopedFlushDenormals();
  ~ScopedFlushDenormals();
  ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
  ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;

 private:
  unsigned int saved_ = 0;
};

}  // namespace fusedrnn
