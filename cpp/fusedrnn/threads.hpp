// Threads: the thread budget, a pool of persistent workers, teams that meet at a spin barrier once
// or twice per time step, and denormal flushing.
#pragma once

#include <atomic>
#include <functional>

namespace fusedrnn {

// The number of threads fusedrnn may use (>= 1). Defaults to the machine's hardware threads.
int get_num_threads();
void set_num_threads(int n);

// Threads that meet at every wait(): a counter and a phase word. Waiters spin briefly (the wait
// between time steps is a few microseconds), then sleep on the phase word.
class SpinBarrier {
 public:
  explicit SpinBarrier(int size) : size_(size) {}
  void wait();
  int size() const { return size_; }

 private:
  const int size_;
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> phase_{0};
  std::atomic<int> sleepers_{0};
};

// The time steps of a team that shares a layer's hidden-unit slices by claiming them: at each step every
// member claims its own slices first, then any slice no one has claimed yet, and the step ends once every
// slice is finished. A member that comes late (its thread just woken, its core taken away for a while)
// has its slices taken over instead of holding the others at a barrier. Each slice's results are the
// same whoever computes it.
class StepClaims {
 public:
  static constexpr int kMaxSlices = 8;
  // For testing: members go for the other members' slices first, so that slices change hands at every
  // step, not only when a member is late.
  static void set_others_first(bool on);
  static bool others_first();
  // For measuring: when off, teams meet at a barrier every step instead (each member its own slices).
  static void set_enabled(bool on);
  static bool enabled();
  // Before the team's first step, by one member; the team must sync after it.
  void reset(int slices);
  // Whether the caller is to compute `slice` at `step` (true for exactly one caller).
  bool claim(int slice, long step) {
    long expected = step;  // slots_[k] counts the steps for which slice k has been claimed
    return slots_[slice].claimed.compare_exchange_strong(expected, step + 1, std::memory_order_acq_rel);
  }
  // A claimed slice is done (its results are visible to whoever wait_step()s after this).
  void finish();
  // Returns once every slice of `step` is finished.
  void wait_step(long step);

 private:
  struct alignas(64) Slot {
    std::atomic<long> claimed{0};
  };
  Slot slots_[kMaxSlices];
  alignas(64) std::atomic<unsigned> finished_{0};  // slices finished over all steps (a futex word)
  alignas(64) std::atomic<int> sleepers_{0};
  unsigned slices_ = 1;
};

// A team of threads working on one piece of work: member `rank` of `size`, sharing `barrier`, and
// `claims` where the work is claimed step by step (or nullptr). split_rows: the members may each take
// their own sequences of the batch through every time step, rather than share each step's hidden units.
struct Team {
  int rank = 0;
  int size = 1;
  SpinBarrier* barrier = nullptr;
  StepClaims* claims = nullptr;
  bool split_rows = false;
  void sync() const {
    if (size > 1) barrier->wait();
  }
  // The share [begin, end) of `count` items (in units of `grain`) that this member takes.
  void share(long count, long grain, long& begin, long& end) const;
};

// A team splits the batch rather than each step's hidden units from rows_per_member() sequences per
// member on. Settable for measuring and testing; 0 never splits.
constexpr long kDefaultRowsPerMember = 8;  // 2 threads: LSTM H=256 N=16 15.6 ms by rows, 17.2 by units
long rows_per_member();
void set_rows_per_member(long rows);

// A parallel region: takes up to `wanted` threads from the persistent pool (the caller is rank 0),
// or only the caller when another region holds the pool, so concurrent calls never wait on each
// other. run(work) calls work(rank) for rank in [0, size()) at once and returns when all are done;
// work may use spin barriers across the ranks.
class ParallelRegion {
 public:
  explicit ParallelRegion(int wanted);
  ~ParallelRegion();
  ParallelRegion(const ParallelRegion&) = delete;
  ParallelRegion& operator=(const ParallelRegion&) = delete;
  int size() const { return size_; }
  void run(const std::function<void(int)>& work);

 private:
  int size_ = 1;
  bool owns_pool_ = false;
};

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
