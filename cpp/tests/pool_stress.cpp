// Stress test of the thread pool (threads.hpp): several callers open parallel regions at once, with
// teams whose sizes change from call to call, meet at spin barriers, and throw; then, with --fork, a
// child made by fork() after the pool has run must compute with its own workers.
// Exit status 0 when every check holds. Built with FUSEDRNN_BUILD_TESTS=ON; CI runs it under
// ThreadSanitizer.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "fusedrnn/threads.hpp"

namespace {

std::atomic<long> g_failures{0};

void fail(const char* what, long a, long b) {
  std::fprintf(stderr, "pool_stress: %s (%ld, %ld)\n", what, a, b);
  g_failures.fetch_add(1);
}

// One region of `wanted` threads: every rank must run exactly once, see the same barrier phases and
// read what the other ranks wrote before the barrier.
void one_region(int wanted, int phases) {
  fusedrnn::ParallelRegion region(wanted);
  const int size = region.size();
  if (size != 1 && size != wanted) fail("region size", size, wanted);
  fusedrnn::SpinBarrier barrier(size);
  std::vector<long> slot(static_cast<std::size_t>(size), -1);
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(size));
  region.run([&](int rank) {
    runs[static_cast<std::size_t>(rank)].fetch_add(1);
    for (int phase = 0; phase < phases; ++phase) {
      slot[static_cast<std::size_t>(rank)] = phase * 1000 + rank;
      barrier.wait();
      const int other = (rank + 1) % size;
      if (slot[static_cast<std::size_t>(other)] != phase * 1000 + other)
        fail("value written before the barrier not seen", slot[static_cast<std::size_t>(other)], phase);
      barrier.wait();
    }
  });
  for (int rank = 0; rank < size; ++rank)
    if (runs[static_cast<std::size_t>(rank)].load() != 1) fail("rank ran", rank, runs[static_cast<std::size_t>(rank)].load());
}

void caller(unsigned seed, int iterations) {
  std::mt19937 rng(seed);
  for (int i = 0; i < iterations; ++i) {
    const int wanted = 1 + static_cast<int>(rng() % 4);  // teams of 1 to 4, changing every call
    if (rng() % 16 == 0) {
      // An exception in any rank reaches the caller; the pool stays usable.
      fusedrnn::ParallelRegion region(wanted);
      const int thrower = static_cast<int>(rng() % static_cast<unsigned>(region.size()));
      bool caught = false;
      try {
        region.run([&](int rank) {
          if (rank == thrower) throw std::runtime_error("planned");
        });
      } catch (const std::runtime_error&) {
        caught = true;
      }
      if (!caught) fail("exception lost, thrower", thrower, region.size());
      continue;
    }
    one_region(wanted, 1 + static_cast<int>(rng() % 3));
  }
}

int run_callers(int callers, int iterations) {
  std::vector<std::thread> threads;
  for (int c = 0; c < callers; ++c) threads.emplace_back(caller, 1234u + static_cast<unsigned>(c), iterations);
  for (auto& t : threads) t.join();
  return g_failures.load() == 0 ? 0 : 1;
}

int fork_child_computes() {
  one_region(3, 2);  // the parent's pool has workers now
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {
    alarm(20);  // a hang in the child ends it with SIGALRM instead of hanging the test
    for (int i = 0; i < 50; ++i) one_region(1 + i % 4, 2);
    _exit(g_failures.load() == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fail("child after fork(): status", status, 0);
    return 1;
  }
  one_region(4, 2);  // and the parent's pool still works
  return g_failures.load() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool do_fork = argc > 1 && std::strcmp(argv[1], "--fork") == 0;
  int status = run_callers(4, 2000);
  if (status == 0 && do_fork) status = fork_child_computes();
  std::printf("pool_stress: %s, %ld failures\n", status == 0 ? "ok" : "FAILED", g_failures.load());
  return status;
}
