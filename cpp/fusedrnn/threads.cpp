#include "fusedrnn/threads.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FUSEDRNN_HAS_ATFORK 1
#endif

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define FUSEDRNN_X86 1
#endif

namespace fusedrnn {

namespace {

int default_threads() {
  const unsigned int n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}
std::atomic<int> g_num_threads{default_threads()};

inline void cpu_relax() {
#ifdef FUSEDRNN_X86
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Persistent workers. Each worker has a seat: a job is handed to the workers it needs by writing
// the job's number into their seats, so a worker reads the work and the team size only for a job that
// is its own (a worker that sat out the previous job never sees it). Workers spin on their seat for a
// while after their last job (back-to-back calls then start in microseconds) before sleeping on `wake_`.
//
// After fork() only the forking thread exists in the child, and the workers and locks it inherits are
// dead or held: the child replaces the pool with a fresh one (see pool()) and leaves the old one alone.
class Pool {
 public:
  bool try_acquire() { return busy_.try_lock(); }
  void release() { busy_.unlock(); }

  // Runs work(rank) for rank in [0, n); the caller must hold the pool.
  void run(int n, const std::function<void(int)>& work) {
    while (static_cast<int>(seats_.size()) < n - 1) {
      seats_.push_back(std::make_unique<Seat>());
      Seat* seat = seats_.back().get();
      const int rank = static_cast<int>(seats_.size());
      // Detached: the pool lives until the process ends (a child after fork() cannot join its parent's).
      std::thread([this, rank, seat] { loop(rank, *seat); }).detach();
    }
    work_ = &work;
    errors_.assign(static_cast<std::size_t>(n), nullptr);
    pending_.store(n - 1, std::memory_order_relaxed);
    ++job_;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (int rank = 1; rank < n; ++rank) seats_[static_cast<std::size_t>(rank - 1)]->job.store(job_, std::memory_order_release);
    }
    wake_.notify_all();
    try {
      work(0);
    } catch (...) {
      errors_[0] = std::current_exception();
    }
    while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
    work_ = nullptr;
    for (auto& e : errors_)
      if (e) std::rethrow_exception(e);
  }

 private:
  struct alignas(64) Seat {
    std::atomic<unsigned long> job{0};  // the last job handed to this worker
  };

  void loop(int rank, Seat& seat) {
    unsigned long done = 0;
    for (;;) {
      // Spin briefly for the next job, then sleep.
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (seat.job.load(std::memory_order_acquire) == done && std::chrono::steady_clock::now() < spin_until)
        cpu_relax();
      if (seat.job.load(std::memory_order_acquire) == done) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return seat.job.load(std::memory_order_acquire) != done; });
      }
      done = seat.job.load(std::memory_order_acquire);
      // The job's work and errors were written before its number: this read sees them.
      try {
        ScopedFlushDenormals flush;
        (*work_)(rank);
      } catch (...) {
        errors_[static_cast<std::size_t>(rank)] = std::current_exception();
      }
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::mutex busy_;   // one caller at a time
  std::mutex mutex_;  // guards sleeping
  std::condition_variable wake_;
  std::atomic<int> pending_{0};
  unsigned long job_ = 0;  // written by the caller holding busy_
  const std::function<void(int)>* work_ = nullptr;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::unique_ptr<Seat>> seats_;
};

// The process's pool, made when the library is loaded. Never destroyed: workers may still be finishing
// a call from a daemon thread while the interpreter exits. A child after fork() gets a new one; the
// parent's stays as it was.
std::atomic<Pool*> g_pool{nullptr};

bool install_pool() {
  g_pool.store(new Pool, std::memory_order_release);
#ifdef FUSEDRNN_HAS_ATFORK
  pthread_atfork(nullptr, nullptr, [] { g_pool.store(new Pool, std::memory_order_release); });
#endif
  return true;
}
[[maybe_unused]] const bool g_pool_installed = install_pool();

Pool& pool() { return *g_pool.load(std::memory_order_acquire); }

}  // namespace

int get_num_threads() { return g_num_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n: expected an integer >= 1, got " + std::to_string(n));
  g_num_threads.store(n, std::memory_order_relaxed);
}

namespace {
// Sleeping on the phase word: a futex on Linux, else yielding.
void wait_while_equal(std::atomic<unsigned>& word, unsigned value) {
#ifdef __linux__
  syscall(SYS_futex, reinterpret_cast<unsigned*>(&word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
#else
  (void)word, (void)value;
  std::this_thread::yield();
#endif
}
void wake_all(std::atomic<unsigned>& word) {
#ifdef __linux__
  syscall(SYS_futex, reinterpret_cast<unsigned*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}
}  // namespace

void SpinBarrier::wait() {
  const unsigned phase = phase_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) == size_ - 1) {
    arrived_.store(0, std::memory_order_relaxed);
    phase_.store(phase + 1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all(phase_);
    return;
  }
  // Spin first (the wait is usually a few microseconds), then sleep: on a busy machine (other
  // libraries' threads spinning too) the partner may be descheduled, and spinning on would only
  // keep it off the core.
  for (int spins = 0; spins < 2000; ++spins) {
    if (phase_.load(std::memory_order_acquire) != phase) return;
    cpu_relax();
  }
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  while (phase_.load(std::memory_order_seq_cst) == phase) wait_while_equal(phase_, phase);
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

void StepClaims::reset(int slices) {
  slices_ = static_cast<unsigned>(std::max(1, std::min(slices, kMaxSlices)));
  for (auto& slot : slots_) slot.claimed.store(0, std::memory_order_relaxed);
  finished_.store(0, std::memory_order_relaxed);
}

void StepClaims::finish() {
  finished_.fetch_add(1, std::memory_order_acq_rel);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all(finished_);
}

void StepClaims::wait_step(long step) {
  const unsigned target = static_cast<unsigned>(step + 1) * slices_;
  // Spin first, then sleep (as SpinBarrier::wait does).
  for (int spins = 0; spins < 2000; ++spins) {
    if (finished_.load(std::memory_order_acquire) >= target) return;
    cpu_relax();
  }
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  for (unsigned seen; (seen = finished_.load(std::memory_order_seq_cst)) < target;) wait_while_equal(finished_, seen);
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

void StopRequest::poll_if_due() {
  if (requested_.load(std::memory_order_relaxed) || !poll_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_poll_) return;
  next_poll_ = now + kPollInterval;
  if (poll_()) requested_.store(true, std::memory_order_release);
}

void Team::share(long count, long grain, long& begin, long& end) const {
  const long units = (count + grain - 1) / grain;
  const long per = units / size, extra = units % size;
  const long first = rank * per + (rank < extra ? rank : extra);
  const long mine = per + (rank < extra ? 1 : 0);
  begin = std::min(count, first * grain);
  end = std::min(count, (first + mine) * grain);
}

ParallelRegion::ParallelRegion(int wanted) {
  if (wanted > 1 && pool().try_acquire()) {
    size_ = wanted;
    owns_pool_ = true;
  }
}

ParallelRegion::~ParallelRegion() {
  if (owns_pool_) pool().release();
}

void ParallelRegion::run(const std::function<void(int)>& work) {
  if (size_ == 1)
    work(0);
  else
    pool().run(size_, work);
}

#ifdef FUSEDRNN_X86
ScopedFlushDenormals::ScopedFlushDenormals() : saved_(_mm_getcsr()) {
  _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
}
ScopedFlushDenormals::~ScopedFlushDenormals() { _mm_setcsr(saved_); }
#else
ScopedFlushDenormals::ScopedFlushDenormals() = default;
ScopedFlushDenormals::~ScopedFlushDenormals() = default;
#endif

}  // namespace fusedrnn
