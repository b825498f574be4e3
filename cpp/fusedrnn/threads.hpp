// Threads: the thread budget, a pool of persistent workers, teams that meet at a spin barrier once
// or twice per time step, and denormal flushing.
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <exception>
#include <functional>
#include <utility>

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

// Stopping a long call early (Ctrl-C). The caller's thread asks `poll` at most every kPollInterval; once
// it says stop, each team leaves its time loop at a step that its members agree on (see Team::leaving),
// the stack leaves after the layer it is in, and the call throws Interrupted.
class StopRequest {
 public:
  static constexpr std::chrono::milliseconds kPollInterval{20};
  explicit StopRequest(std::function<bool()> poll) : poll_(std::move(poll)) {}
  // By the caller's thread only.
  void poll_if_due();
  bool requested() const { return requested_.load(std::memory_order_acquire); }
  // By the caller's thread before the region meets after its `round`-th layer; everyone reads
  // leave_after(round) after that meeting, so all agree.
  void note_round(long round) {
    if (requested() && stop_round_.load(std::memory_order_relaxed) == LONG_MAX)
      stop_round_.store(round, std::memory_order_release);
  }
  bool leave_after(long round) const { return round >= stop_round_.load(std::memory_order_acquire); }

 private:
  std::function<bool()> poll_;
  std::chrono::steady_clock::time_point next_poll_{};
  std::atomic<bool> requested_{false};
  std::atomic<long> stop_round_{LONG_MAX};
};

// Thrown by a call that a StopRequest ended; its outputs are not valid.
struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted"; }
};

// A team of threads working on one piece of work: member `rank` of `size`, sharing `barrier`, and
// `claims` where the work may be claimed step by step (or nullptr).
struct Team {
  int rank = 0;
  int size = 1;
  SpinBarrier* barrier = nullptr;
  StepClaims* claims = nullptr;
  StopRequest* stop = nullptr;           // or nullptr: the call cannot be stopped
  std::atomic<long>* stop_at = nullptr;  // the team's own: the step at which it leaves its time loop
  bool poller = false;                   // this member is the caller's thread, which polls `stop`
  void sync() const {
    if (size > 1) barrier->wait();
  }
  // Called by every member at the start of its time loop's step number `step` (0, 1, ... in the order
  // the loop runs them): whether to leave the loop now. The team's rank 0 sets the stop one step ahead,
  // so a team that meets every step leaves at the same step; a team that does not meet (claims, rows)
  // has no member waiting on another's step.
  bool leaving(long step) const {
    if (!stop) return false;
    if (poller) stop->poll_if_due();
    if (rank == 0 && stop->requested() && stop_at->load(std::memory_order_relaxed) == LONG_MAX)
      stop_at->store(step + 1, std::memory_order_release);
    return step >= stop_at->load(std::memory_order_acquire);
  }
  // Whether the call is being stopped, for work outside the time loop: a member may skip what is left
  // of its share (the call's outputs are thrown away), but must still meet the team where it meets.
  bool stopping() const {
    if (!stop) return false;
    if (poller) stop->poll_if_due();
    return stop->requested();
  }
  // The share [begin, end) of `count` items (in units of `grain`) that this member takes.
  void share(long count, long grain, long& begin, long& end) const;
};


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
