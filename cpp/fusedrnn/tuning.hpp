// The kernels' schedule switches, for measuring and testing (fusedrnn._testing.tuning). A call takes
// its copy once, when it starts (current_tuning()), and passes it down, so that a switch another
// thread flips during the call changes nothing in it: every member of a team sees the same values.
#pragma once

namespace fusedrnn {

// A team splits the batch rather than each step's hidden units from this many sequences per member.
constexpr long kDefaultRowsPerMember = 8;  // from here rows beat units (bench/README.md, Kernel decisions)

struct Tuning {
  // Project the input one step at a time, as a stream's one-step call does (layer.hpp).
  bool projection_per_step = false;
  // The members of a team claim the hidden-unit slices of each step (off: they meet at a barrier every
  // step, each with its own slices).
  bool claim_steps = true;
  // Members claim the other members' slices first, so that slices change hands at every step.
  bool claim_others_first = false;
  // From how many sequences per member a team splits the batch; 0 never.
  long rows_per_member = kDefaultRowsPerMember;
  // A bidirectional layer runs its directions at once, a team each (off: one after the other).
  // FUSEDRNN_DIRECTIONS=sequential sets it off for the process.
  bool directions_at_once = true;
  // Hidden-unit slices of the layers built from now on (0: one per 64 units, at most one per hardware
  // thread and 8). Read when a model is built, not per call: the packed weights follow the slices.
  int slices = 0;
};

Tuning current_tuning();
void set_tuning(const Tuning& tuning);

}  // namespace fusedrnn
