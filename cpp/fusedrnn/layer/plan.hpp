// How one layer-direction call is run, decided once per call before its threads start: how much of the
// input projection is computed at a time, and how the team shares each time step.
#pragma once

#include <algorithm>
#include <cstddef>

#include "fusedrnn/cells/traits.hpp"
#include "fusedrnn/layer_types.hpp"
#include "fusedrnn/panels.hpp"
#include "fusedrnn/threads.hpp"
#include "fusedrnn/tuning.hpp"

namespace fusedrnn {

constexpr Index kRowChunk = 256;     // rows of the big products over all steps
constexpr Index kColumnChunk = 64;   // columns of the per-step products split across a team
constexpr Index kProjectionColumns = 16 * kPanelWidth;  // columns of the input projection's tasks
constexpr std::size_t kProjectionBytes = std::size_t{8} << 20;  // the input projection's buffer, at most
constexpr Index kGradientRows = 16384;  // rows of the weight gradients' sums per product (about 30 ms)

// How a team shares the time steps of a layer.
enum class StepSchedule {
  kSlicesAtBarrier,  // each member its own hidden-unit slices; the team meets at a barrier every step
  kClaimedSlices,    // the members claim the slices of each step (StepClaims): a late member's are taken over
  kRowsPerMember,    // each member its own sequences through every step with all the weights; no barrier
};

struct LayerPlan {
  // Steps of the input projection computed at a time: 0, all of them before the time loop (one big
  // product); B > 0, B steps at a time, each slice's columns by whoever runs the slice at the first step
  // of the block, just before it reads them.
  Index projection_steps = 0;
  StepSchedule schedule = StepSchedule::kSlicesAtBarrier;
  bool claim_others_first = false;  // kClaimedSlices: claim the other members' slices first
};

// The projection of all steps outgrows the caches at large batch (one step at a time is then faster:
// writing it out and reading it back costs more than one big product saves), and at small batch it
// would hold G*H values per row of x, several times the output: blocks of kProjectionBytes keep the big
// products and bound the memory. The panel kernels sum every element the same way either way.
// per_step_forced (Tuning::projection_per_step): one step at a time, as a stream's one-step call, so that
// a long call times the arithmetic of such a step without its per-call work.
template <typename T, typename S>
Index projection_block(const LayerWeights<T, S>& w, Index steps, Index batch, bool per_step_forced) {
  const std::size_t row_bytes = static_cast<std::size_t>(batch * w.gates * w.hidden_size) * sizeof(T);
  if (has_panel_kernels<S>() && (per_step_forced || steps == 1)) return 1;
  if (static_cast<std::size_t>(steps) * row_bytes <= kProjectionBytes) return 0;
  if (has_panel_kernels<S>() && batch >= 16) return 1;
  return std::max<Index>(1, static_cast<Index>(kProjectionBytes / row_bytes));
}

// Rows per member only where a row's values need nothing from other rows within a step (no second
// product, no projection, no peephole sums over rows; a whole-row cell's parameter gradients are such
// sums, so only its forward pass) and the panel kernels give every element the same bits for any
// number of rows. Claimed slices only where a step has one phase. backward: the plan of a backward pass.
template <typename Cell, typename T, typename S>
LayerPlan plan_layer(const LayerWeights<T, S>& w, Index steps, Index batch, int team_size, const Tuning& tuning,
                     bool backward) {
  LayerPlan plan;
  plan.projection_steps = projection_block(w, steps, batch, tuning.projection_per_step);
  plan.claim_others_first = tuning.claim_others_first;
  const bool one_phase = !has_second_product<Cell>() && w.proj_size == 0;
  const bool sums_over_rows = w.peephole_vectors > 0 || (backward && Cell::kPhases == StepPhases::kWholeRow);
  const bool rows_apart = one_phase && !sums_over_rows && has_panel_kernels<S>();
  if (team_size > 1 && rows_apart && tuning.rows_per_member > 0 && batch >= tuning.rows_per_member * team_size)
    plan.schedule = StepSchedule::kRowsPerMember;
  else if (team_size > 1 && one_phase && tuning.claim_steps)
    plan.schedule = StepSchedule::kClaimedSlices;
  return plan;
}

// How many members a layer's steps can keep busy: its slices; for a whole-row cell (one slice), in a
// forward pass its groups of rows (rows per member), in a backward pass the column chunks of each step's
// dh product and of the weight gradients (the cell's pass runs on one member).
template <typename Cell, typename T, typename S>
Index parallel_parts(const LayerWeights<T, S>& w, Index batch, const Tuning& tuning, bool backward) {
  if constexpr (Cell::kPhases == StepPhases::kWholeRow) {
    if (backward) return std::max<Index>(w.slices(), w.output_size / kColumnChunk);
    if (tuning.rows_per_member > 0) return std::max<Index>(w.slices(), batch / tuning.rows_per_member);
  }
  return w.slices();
}

// Calls f(begin, size) for this member's share of fixed-size chunks of [0, count). The chunks depend
// only on count and chunk, so each product is computed the same way (same blocking, same sums) with
// any team size: results are bit-identical at any thread count.
template <typename F>
void for_my_chunks(const Team& team, Index count, Index chunk, F&& f) {
  long c0, c1;
  team.share((count + chunk - 1) / chunk, 1, c0, c1);
  for (long c = c0; c < c1 && !team.stopping(); ++c) f(c * chunk, std::min(chunk, count - c * chunk));
}

}  // namespace fusedrnn
