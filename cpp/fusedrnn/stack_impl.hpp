// The stack driver, generic over the cell: layers in order; within a layer the two directions run
// at once on two teams when there are threads for both (else one after the other on one team);
// residual connections (a layer after the first adds its input to its output) and dropout between
// layers when training (layer k+1 reads layer k's output times the mask). Included only by the per-cell translation units
// (stack_rnn.cpp, stack_lstm.cpp, stack_gru.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>
#include <vector>

#include "fusedrnn/layer.hpp"
#include "fusedrnn/stack.hpp"
#include "fusedrnn/threads.hpp"
#include "fusedrnn/tuning.hpp"

namespace fusedrnn {

namespace detail {

// Copies one layer-direction's slice of a [D*L, N, X] state array, or zeros when src is null.
template <typename T>
void init_state(const T* src, Index slot, Index batch, Index width, T* dst) {
  const Index count = batch * width;
  if (src == dst) return;  // updated in place (a stream's step)
  if (src)
    std::copy(src + slot * count, src + (slot + 1) * count, dst + slot * count);
  else
    std::fill(dst + slot * count, dst + (slot + 1) * count, T(0));
}

// How many threads a call should use: enough work per step to pay for a barrier, and no more
// members than parts (hidden-unit slices, or groups of rows: parallel_parts) per direction.
inline int wanted_threads(const StackConfig& cfg, Index batch, Index parts) {
  const Index macs_per_step = batch * cfg.output_size() * cfg.gates() * cfg.hidden_size;
  if (macs_per_step < (Index(1) << 15)) return 1;
  return static_cast<int>(std::min<Index>(get_num_threads(), parts * cfg.directions()));
}

// The teams of a region of `size` threads: two (one per direction) when directions run at once
// and size >= 2.
struct Teams {
  SpinBarrier all;
  SpinBarrier first;
  SpinBarrier second;
  StepClaims first_claims;  // the forward steps of each team
  StepClaims second_claims;
  const Tuning& tuning;  // the call's copy: every member of the call agrees
  int split;  // ranks [0, split) work on direction 0, [split, size) on direction 1; 0 = one team for both
  StopRequest* stop;
  std::atomic<long> first_stop_at{LONG_MAX};
  std::atomic<long> second_stop_at{LONG_MAX};
  // bidirectional: the layers have two directions, run at once when the tuning says so.
  Teams(int size, bool bidirectional, StopRequest* stop, const Tuning& tuning)
      : all(size),
        first(bidirectional && size >= 2 ? (size + 1) / 2 : size),
        second(bidirectional && size >= 2 ? size / 2 : 1),
        tuning(tuning),
        split(bidirectional && size >= 2 ? (size + 1) / 2 : 0),
        stop(stop) {}
  // The size of the team that runs direction d.
  int size_for(Index d) const { return split == 0 ? all.size() : d == 0 ? first.size() : second.size(); }
  Team team_of(int rank) {
    StepClaims* first_team_claims = tuning.claim_steps ? &first_claims : nullptr;
    if (split == 0) return finish(Team{rank, all.size(), &all, first_team_claims}, &first_stop_at, rank);
    if (rank < split) return finish(Team{rank, split, &first, first_team_claims}, &first_stop_at, rank);
    return finish(Team{rank - split, all.size() - split, &second, tuning.claim_steps ? &second_claims : nullptr},
                  &second_stop_at, rank);
  }
  Team finish(Team team, std::atomic<long>* stop_at, int rank) const {
    team.stop = stop;
    team.stop_at = stop_at;
    team.poller = rank == 0;
    return team;
  }
  // The directions a rank works on: [begin, end).
  void directions_of(int rank, Index D, Index& begin, Index& end) const {
    if (split == 0) {
      begin = 0;
      end = D;
    } else {
      begin = rank < split ? 0 : 1;
      end = begin + 1;
    }
  }
};

// The plan of each direction's layers (the same for every layer of the stack).
template <typename Cell, typename T>
std::vector<LayerPlan> plan_directions(const WeightSet<T>& weights, Index D, Index steps, Index batch,
                                       const Teams& teams, bool backward) {
  std::vector<LayerPlan> plans;
  for (Index d = 0; d < D; ++d)
    plans.push_back(plan_layer<Cell>(weights[static_cast<std::size_t>(d)], steps, batch, teams.size_for(d),
                                     teams.tuning, backward));
  return plans;
}

// Training: the tape's buffers, its copy of the input (padding zeroed) and of the dropout masks.
template <typename Cell, typename T>
void prepare_tape(const StackConfig& cfg, const WeightSet<T>& weights, const ForwardArgs<T>& a, StackTape<T>& tape) {
  const Index L = cfg.num_layers, steps = a.steps, batch = a.batch, rows = steps * batch;
  const Index H = cfg.hidden_size, width = cfg.directions() * cfg.output_size();
  tape.steps = steps;
  tape.batch = batch;
  if (a.lengths) tape.lengths.assign(a.lengths, a.lengths + batch);
  tape.layer_inputs.clear();
  tape.layer_inputs.resize(static_cast<std::size_t>(L));
  tape.dropout_masks.clear();
  tape.dropout_masks.resize(a.dropout_masks.empty() ? 0 : static_cast<std::size_t>(L - 1));
  tape.layers.clear();
  tape.layers.resize(static_cast<std::size_t>(L * cfg.directions()));
  tape.layer_inputs[0].allocate(static_cast<std::size_t>(rows * cfg.input_size));
  std::copy(a.x, a.x + rows * cfg.input_size, tape.layer_inputs[0].data());
  // x past a sequence's end is ignored and may hold anything (np.empty, NaN as a pad marker); backward's
  // weight gradient sums over every row, where 0 * NaN would poison it, so the saved copy holds zeros.
  if (a.lengths)
    for (Index t = 0; t < steps; ++t)
      for (Index n = 0; n < batch; ++n)
        if (t >= a.lengths[n])
          std::fill_n(tape.layer_inputs[0].data() + (t * batch + n) * cfg.input_size, cfg.input_size, T(0));
  for (Index layer = 1; layer < L; ++layer) tape.layer_inputs[layer].allocate(static_cast<std::size_t>(rows * width));
  for (auto& lt : tape.layers) {
    lt.gates.allocate(static_cast<std::size_t>(rows * Cell::saved_gates(weights[0].options) * H));
    lt.h_prev.allocate(static_cast<std::size_t>(rows * cfg.output_size()));
    if (Cell::kHasCellState) lt.c_prev.allocate(static_cast<std::size_t>(rows * H));
  }
  const Index zoneout_width = (Cell::kHasCellState ? 2 : 1) * H;
  for (std::size_t slot = 0; slot < tape.layers.size(); ++slot) {
    LayerTape<T>& lt = tape.layers[slot];
    if (!a.recurrent_masks.empty()) {
      lt.recurrent_mask.allocate(static_cast<std::size_t>(batch * cfg.output_size()));
      std::copy_n(a.recurrent_masks[slot], batch * cfg.output_size(), lt.recurrent_mask.data());
    }
    if (!a.zoneout_masks.empty()) {
      lt.zoneout.allocate(static_cast<std::size_t>(rows * zoneout_width));
      std::copy_n(a.zoneout_masks[slot], rows * zoneout_width, lt.zoneout.data());
    }
  }
  for (std::size_t k = 0; k < tape.dropout_masks.size(); ++k) {
    tape.dropout_masks[k].allocate(static_cast<std::size_t>(rows * width));
    std::copy(a.dropout_masks[k], a.dropout_masks[k] + rows * width, tape.dropout_masks[k].data());
  }
}

// Slot `slot`'s parameter gradients among the stack's, in Stack::param_shapes order.
template <typename T>
LayerGrads<T> layer_grads(const StackConfig& cfg, const BackwardArgs<T>& a, Index slot) {
  return cfg.param_arrays(a.grad_params.data() + slot * cfg.params_per_layer_direction());
}

// Every member of the region calls f(k) for its share of [0, count); then the region meets.
template <typename F>
void elementwise(const Team& everyone, Index count, F&& f) {
  long b, e;
  everyone.share(count, 64, b, e);
  for (long k = b; k < e; ++k) f(k);
  everyone.sync();
}

}  // namespace detail

template <typename Cell, typename T>
void StackRunner<Cell, T>::forward(const StackConfig& cfg, const WeightSet<T>& weights, const ForwardArgs<T>& a,
                                   StackTape<T>* tape) {
  const Index L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size, H_out = cfg.output_size();
  const Index steps = a.steps, batch = a.batch, rows = steps * batch, width = D * H_out;
  const bool training = tape != nullptr;
  const Tuning tuning = current_tuning();
  ScopedFlushDenormals flush;
  ParallelRegion region(detail::wanted_threads(cfg, batch, parallel_parts<Cell>(weights[0], batch, tuning, false)));
  detail::Teams teams(region.size(), D == 2 && tuning.directions_at_once, a.stop, tuning);
  const std::vector<LayerPlan> plans = detail::plan_directions<Cell>(weights, D, steps, batch, teams, false);

  // Everything is allocated before the threads start.
  StackWorkspace<T> own;
  StackWorkspace<T>& work = a.workspace && !training ? *a.workspace : own;
  std::vector<LayerWorkspace<T>>& ws = work.directions;
  if (ws.size() != static_cast<std::size_t>(D)) ws = std::vector<LayerWorkspace<T>>(static_cast<std::size_t>(D));
  for (Index d = 0; d < D; ++d) {
    ws[d].template resize_forward<Cell>(weights[d], plans[d], steps, batch, training,
                                        training && !a.recurrent_masks.empty(), cfg.zoneout > 0);
    ws[d].backwards_first = work.calls % 2 == 1;  // a stream's steps alternate too
  }
  ++work.calls;
  Buffer<T>* buffers = work.between;  // inference: the outputs of inner layers, ping-ponged
  if (training)
    detail::prepare_tape<Cell>(cfg, weights, a, *tape);
  else
    for (Index b = 0; b < std::min<Index>(2, L - 1); ++b) buffers[b].allocate(static_cast<std::size_t>(rows * width));
  auto layer_input = [&](Index layer) -> const T* {
    if (layer == 0) return training ? tape->layer_inputs[0].data() : a.x;
    return training ? tape->layer_inputs[layer].data() : buffers[(layer - 1) % 2].data();
  };
  auto layer_output = [&](Index layer) -> T* {
    if (layer == L - 1) return a.y;
    return training ? tape->layer_inputs[layer + 1].data() : buffers[layer % 2].data();
  };

  region.run([&](int rank) {
    const Team team = teams.team_of(rank);
    const Team everyone{rank, teams.all.size(), &teams.all};
    Index d0, d1;
    teams.directions_of(rank, D, d0, d1);
    for (Index layer = 0; layer < L; ++layer) {
      const T* input = layer_input(layer);
      T* out = layer_output(layer);
      for (Index d = d0; d < d1; ++d) {
        const Index slot = layer * D + d;
        const LayerWeights<T>& w = weights[static_cast<std::size_t>(slot)];
        if (team.rank == 0) {
          detail::init_state(a.h0, slot, batch, H_out, a.h_n);
          if (Cell::kHasCellState) detail::init_state(a.c0, slot, batch, H, a.c_n);
          if (team.claims) team.claims->reset(static_cast<int>(w.slices()));
        }
        team.sync();
        LayerCall<T> call{steps, batch, d == 1, input, a.lengths, a.h_n + slot * batch * H_out,
                          Cell::kHasCellState ? a.c_n + slot * batch * H : nullptr, out + d * H_out, width};
        if (training) {
          const LayerTape<T>& lt = tape->layers[static_cast<std::size_t>(slot)];
          call.recurrent_mask = lt.recurrent_mask.size() ? lt.recurrent_mask.data() : nullptr;
          call.zoneout = lt.zoneout.size() ? lt.zoneout.data() : nullptr;
        } else {
          call.zoneout_keep = static_cast<T>(cfg.zoneout);
        }
        if (training)
          LayerForward<Cell, T, true>(team, plans[d], w, call, &tape->layers[static_cast<std::size_t>(slot)], ws[d]).run();
        else
          LayerForward<Cell, T, false>(team, plans[d], w, call, nullptr, ws[d]).run();
      }
      if (a.stop && rank == 0) a.stop->note_round(layer);
      everyone.sync();
      if (a.stop && a.stop->leave_after(layer)) break;
      if (cfg.residual && layer > 0)  // out = layer(input) + input; both are [T*N, D*H_out]
        detail::elementwise(everyone, rows * width, [&](long k) { out[k] += input[k]; });
      if (training && layer < L - 1 && !tape->dropout_masks.empty()) {
        const T* mask = tape->dropout_masks[static_cast<std::size_t>(layer)].data();
        detail::elementwise(everyone, rows * width, [&](long k) { out[k] *= mask[k]; });
      }
    }
  });
  if (a.stop && a.stop->requested()) throw Interrupted();
}

template <typename Cell, typename T>
void StackRunner<Cell, T>::backward(const StackConfig& cfg, const StackTape<T>& tape, const BackwardArgs<T>& a) {
  const WeightSet<T>& weights = *tape.weights;
  const Index L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size, H_out = cfg.output_size();
  const Index steps = tape.steps, batch = tape.batch, rows = steps * batch, width = D * H_out;
  const std::int64_t* lengths = tape.lengths.empty() ? nullptr : tape.lengths.data();
  const Tuning tuning = current_tuning();
  ScopedFlushDenormals flush;
  ParallelRegion region(detail::wanted_threads(cfg, batch, parallel_parts<Cell>(weights[0], batch, tuning, true)));
  detail::Teams teams(region.size(), D == 2 && tuning.directions_at_once, a.stop, tuning);
  const std::vector<LayerPlan> plans = detail::plan_directions<Cell>(weights, D, steps, batch, teams, true);

  Index max_in = cfg.input_size;
  for (Index layer = 1; layer < L; ++layer) max_in = std::max(max_in, cfg.layer_input_size(layer));
  std::vector<LayerWorkspace<T>> ws(static_cast<std::size_t>(D));
  const bool recurrent_dropout = tape.layers[0].recurrent_mask.size() > 0, zoneout = tape.layers[0].zoneout.size() > 0;
  for (Index d = 0; d < D; ++d)
    ws[d].template resize_backward<Cell>(weights[d], steps, batch, max_in, recurrent_dropout, zoneout);
  // Gradients wrt layer outputs between layers, and the reverse direction's share of dx.
  Buffer<T> grad_between[2];
  for (Index b = 0; b < std::min<Index>(2, L - 1); ++b) grad_between[b].allocate(static_cast<std::size_t>(rows * width));
  Buffer<T> dx_reverse(D == 2 ? static_cast<std::size_t>(rows * max_in) : 0);
  auto grad_output = [&](Index layer) -> const T* {
    return layer == L - 1 ? a.grad_y : grad_between[layer % 2].data();
  };
  auto grad_input = [&](Index layer) -> T* { return layer == 0 ? a.grad_x : grad_between[(layer - 1) % 2].data(); };

  region.run([&](int rank) {
    const Team team = teams.team_of(rank);
    const Team everyone{rank, teams.all.size(), &teams.all};
    Index d0, d1;
    teams.directions_of(rank, D, d0, d1);
    for (Index layer = L - 1; layer >= 0; --layer) {
      const T* gy = grad_output(layer);
      T* gx = grad_input(layer);
      for (Index d = d0; d < d1; ++d) {
        const Index slot = layer * D + d;
        if (team.rank == 0) {
          detail::init_state(a.grad_h_n, slot, batch, H_out, a.grad_h0);
          if (Cell::kHasCellState) detail::init_state(a.grad_c_n, slot, batch, H, a.grad_c0);
        }
        team.sync();
        LayerGradCall<T> call{steps, batch, d == 1, tape.layer_inputs[static_cast<std::size_t>(layer)].data(), lengths,
                              gy + d * H_out, width, a.grad_h0 + slot * batch * H_out,
                              Cell::kHasCellState ? a.grad_c0 + slot * batch * H : nullptr,
                              d == 0 ? gx : dx_reverse.data(), detail::layer_grads(cfg, a, slot)};
        const LayerTape<T>& lt = tape.layers[static_cast<std::size_t>(slot)];
        call.recurrent_mask = lt.recurrent_mask.size() ? lt.recurrent_mask.data() : nullptr;
        call.zoneout = lt.zoneout.size() ? lt.zoneout.data() : nullptr;
        LayerBackward<Cell, T>(team, plans[d], weights[static_cast<std::size_t>(slot)], call,
                               tape.layers[static_cast<std::size_t>(slot)], ws[d]).run();
      }
      if (a.stop && rank == 0) a.stop->note_round(L - 1 - layer);
      everyone.sync();
      if (a.stop && a.stop->leave_after(L - 1 - layer)) break;
      // Sum the directions' dx, add the residual path, and undo dropout for the layer below.
      const T* mask = layer > 0 && !tape.dropout_masks.empty()
                          ? tape.dropout_masks[static_cast<std::size_t>(layer - 1)].data()
                          : nullptr;
      const bool residual = cfg.residual && layer > 0;  // the input also reached the output directly
      detail::elementwise(everyone, rows * cfg.layer_input_size(layer), [&](long k) {
        if (D == 2) gx[k] += dx_reverse.data()[k];
        if (residual) gx[k] += gy[k];
        if (mask) gx[k] *= mask[k];
      });
    }
  });
  if (a.stop && a.stop->requested()) throw Interrupted();
}

}  // namespace fusedrnn
