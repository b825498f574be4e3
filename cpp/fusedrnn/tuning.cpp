#include "fusedrnn/tuning.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace fusedrnn {

namespace {

bool directions_at_once_by_default() {
  const char* env = std::getenv("FUSEDRNN_DIRECTIONS");
  return env == nullptr || std::strcmp(env, "sequential") != 0;
}

// One atomic per switch (no lock, so nothing to reset after fork): a call reads each once.
const Tuning kDefaults;
std::atomic<bool> g_projection_per_step{kDefaults.projection_per_step};
std::atomic<bool> g_claim_steps{kDefaults.claim_steps};
std::atomic<bool> g_claim_others_first{kDefaults.claim_others_first};
std::atomic<long> g_rows_per_member{kDefaults.rows_per_member};
std::atomic<bool> g_directions_at_once{directions_at_once_by_default()};
std::atomic<int> g_slices{kDefaults.slices};

}  // namespace

Tuning current_tuning() {
  Tuning tuning;
  tuning.projection_per_step = g_projection_per_step.load(std::memory_order_relaxed);
  tuning.claim_steps = g_claim_steps.load(std::memory_order_relaxed);
  tuning.claim_others_first = g_claim_others_first.load(std::memory_order_relaxed);
  tuning.rows_per_member = g_rows_per_member.load(std::memory_order_relaxed);
  tuning.directions_at_once = g_directions_at_once.load(std::memory_order_relaxed);
  tuning.slices = g_slices.load(std::memory_order_relaxed);
  return tuning;
}

void set_tuning(const Tuning& tuning) {
  g_projection_per_step.store(tuning.projection_per_step, std::memory_order_relaxed);
  g_claim_steps.store(tuning.claim_steps, std::memory_order_relaxed);
  g_claim_others_first.store(tuning.claim_others_first, std::memory_order_relaxed);
  g_rows_per_member.store(tuning.rows_per_member, std::memory_order_relaxed);
  g_directions_at_once.store(tuning.directions_at_once, std::memory_order_relaxed);
  g_slices.store(tuning.slices, std::memory_order_relaxed);
}

}  // namespace fusedrnn
