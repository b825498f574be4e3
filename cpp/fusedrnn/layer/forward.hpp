// The forward time loop of one layer-direction, run by every member of a team, on the schedule its plan
// chose (plan.hpp).
//
// The input projection is computed before the loop (all steps, rows shared by the team) or by blocks of
// steps inside it (each slice's columns by whoever runs the slice). Each step, a member computes the
// recurrent product for the hidden-unit slices it runs (its columns of the packed W_hhᵀ, which stay in
// its cache for all T steps) and the cell's fused pass for those units. A step with a second phase (the
// reset-before GRU's candidate product, the LSTM's projection) meets at a barrier between the phases.
//
// Recurrent dropout (training) multiplies h by its mask before the recurrent product: whoever writes a
// unit of h' also writes it masked, into a second pair of buffers that the products read. Zoneout mixes
// each unit's new value with its previous one right after the cell's pass: factors drawn per step when
// training, the constant p when not.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "fusedrnn/layer/plan.hpp"
#include "fusedrnn/layer/projection.hpp"
#include "fusedrnn/layer/workspace.hpp"
#include "fusedrnn/matmul.hpp"

namespace fusedrnn {

// S: the weights' storage type (LayerWeights); only the panel products see it.
template <typename Cell, typename T, bool kTraining, typename S = T>
class LayerForward {
 public:
  static constexpr Index G = Cell::kGates;

  // tape: filled when kTraining, else nullptr.
  LayerForward(const Team& team, const LayerPlan& plan, const LayerWeights<T, S>& w, const LayerCall<T>& call,
               LayerTape<T>* tape, LayerWorkspace<T>& ws)
      : team_(team), plan_(plan), w_(w), a_(call), tape_(tape), ws_(ws), H_(w.hidden_size),
        H_out_(w.output_size), GH_(G * w.hidden_size), S_(Cell::saved_gates(w.options)), project_(w.proj_size > 0),
        active_(call.lengths, call.batch), h_cur_(call.h), h_next_(ws.h_alt.data()),
        masked_cur_(ws.h_masked[0].data()), masked_next_(ws.h_masked[1].data()),
        zoneout_(call.zoneout != nullptr || call.zoneout_keep > 0), block_len_(call.steps) {
    k1_ = w.slices();
    q1_ = H_out_;
    n1_ = call.batch;
    if (plan.schedule == StepSchedule::kRowsPerMember) {
      team.share(call.batch, 1, n0_, n1_);  // my sequences, every slice and column
    } else {
      team.share(w.slices(), 1, k0_, k1_);        // my hidden-unit slices
      team.share(H_out_, kColumnChunk, q0_, q1_);  // my columns of h (copies, projection)
    }
    row_.options = &w.options;
  }

  void run() {
    if (a_.recurrent_mask) {  // h entering the first step, masked: my rows and columns
      for (Index n = n0_; n < n1_; ++n) mask_columns(n, q0_, q1_ - q0_, h_cur_, masked_cur_);
      if (plan_.projection_steps != 0) team_.sync();
    }
    if (plan_.projection_steps == 0) {
      project_input(team_, w_, a_.steps * a_.batch, a_.x, ws_.xg.data());
      team_.sync();
    }
    for (Index s = 0; s < a_.steps; ++s) {
      if (team_.leaving(s)) break;
      begin_step(s);
      switch (plan_.schedule) {
        case StepSchedule::kClaimedSlices:
          claimed_step(s);
          break;
        case StepSchedule::kRowsPerMember:
          save_state_columns();
          run_my_slices();
          break;
        case StepSchedule::kSlicesAtBarrier:
          step_at_barrier();
          break;
      }
      std::swap(h_cur_, h_next_);
      std::swap(masked_cur_, masked_next_);
    }
    if (h_cur_ != a_.h)
      for (Index n = n0_; n < n1_; ++n)
        std::copy(h_cur_ + n * H_out_ + q0_, h_cur_ + n * H_out_ + q1_, a_.h + n * H_out_ + q0_);
    team_.sync();
  }

 private:
  void begin_step(Index s) {
    t_ = a_.reverse ? a_.steps - 1 - s : s;
    active_.at(t_);
    trow_ = t_ * a_.batch;
    const Index block = plan_.projection_steps;
    block_start_ = block > 0 && s % block == 0;
    if (block_start_) {  // the block's steps are [t_lo, t_lo + block_len) in time, in xg in time order
      block_len_ = std::min(block, a_.steps - s);
      t_lo_ = a_.reverse ? a_.steps - s - block_len_ : s;
    }
    // Every other step reads the weights in the opposite order (slices, products and panels), so that
    // it starts on what the step before left in the cache.
    backwards_ = ws_.backwards_first != (s % 2 == 1);
  }

  T* xg_row(Index t, Index n) const { return ws_.xg.data() + ((t - t_lo_) * a_.batch + n) * GH_; }

  // Recurrent dropout: masked[n, q0 : q0 + width) = h[n, q0 : q0 + width) ⊙ the row's mask.
  void mask_columns(Index n, Index q0, Index width, const T* h, T* masked) const {
    const Index at = n * H_out_ + q0;
    Vec<T>(masked + at, width) = ConstVec<T>(h + at, width) * ConstVec<T>(a_.recurrent_mask + at, width);
  }

  // What the recurrent product multiplies: h, or h ⊙ mask with recurrent dropout.
  const T* product_input() const { return a_.recurrent_mask ? masked_cur_ : h_cur_; }

  // Zoneout after the cell's pass over units [u0, u0 + Hs) of active row n: h' = k ⊙ h_new + (1 - k) ⊙ h
  // (a blend, exact at k = 0 and 1), k the factors of the step (training) or 1 - p, and likewise c from
  // c_old.
  void zone_out(Index n, Index u0, Index Hs) {
    T* h_new = h_next_ + n * H_ + u0;
    const ConstVec<T> h_prev(h_cur_ + n * H_ + u0, Hs);
    const Index Z = Cell::kHasCellState ? 2 : 1;
    if (a_.zoneout) {
      const ConstVec<T> k(a_.zoneout + (trow_ + n) * Z * H_ + u0, Hs);
      Vec<T>(h_new, Hs) = k * Vec<T>(h_new, Hs) + (T(1) - k) * h_prev;
      if (Cell::kHasCellState) {
        const ConstVec<T> c_prev(ws_.c_old.data() + n * H_ + u0, Hs), k_c(k.data() + H_, Hs);
        Vec<T> c(a_.c + n * H_ + u0, Hs);
        c = k_c * c + (T(1) - k_c) * c_prev;
      }
    } else {
      const T keep = a_.zoneout_keep;
      Vec<T>(h_new, Hs) = keep * h_prev + (T(1) - keep) * Vec<T>(h_new, Hs);
      if (Cell::kHasCellState) {
        const ConstVec<T> c_prev(ws_.c_old.data() + n * H_ + u0, Hs);
        Vec<T>(a_.c + n * H_ + u0, Hs) = keep * c_prev + (T(1) - keep) * Vec<T>(a_.c + n * H_ + u0, Hs);
      }
    }
  }

  // After the cell's last pass over units [u0, u0 + Hs) of row n (h' in h_next, without projection):
  // zoneout, the output, and h' masked for the next step's product.
  void finish_units(Index n, Index u0, Index Hs) {
    if (active_(n)) {
      if (zoneout_) zone_out(n, u0, Hs);
      std::copy(h_next_ + n * H_ + u0, h_next_ + n * H_ + u0 + Hs, a_.y + (trow_ + n) * a_.y_stride + u0);
    }
    if (a_.recurrent_mask) mask_columns(n, u0, Hs, h_next_, masked_next_);
  }

  // The tape's copy of the state entering the step: my columns of h, my slices of c.
  void save_state_columns() {
    if constexpr (kTraining) {
      for (Index n = n0_; n < n1_; ++n) {
        std::copy(h_cur_ + n * H_out_ + q0_, h_cur_ + n * H_out_ + q1_, tape_->h_prev.data() + (trow_ + n) * H_out_ + q0_);
        if (Cell::kHasCellState)
          for (long k = k0_; k < k1_; ++k)
            std::copy(a_.c + n * H_ + w_.unit_begin[k], a_.c + n * H_ + w_.unit_begin[k + 1],
                      tape_->c_prev.data() + (trow_ + n) * H_ + w_.unit_begin[k]);
      }
    }
  }

  // Claimed slices go with their tape copies (one phase, so no projection: H_out = H).
  void save_slice_state(Index u0, Index Hs) {
    if constexpr (kTraining) {
      for (Index n = n0_; n < n1_; ++n) {
        std::copy_n(h_cur_ + n * H_ + u0, Hs, tape_->h_prev.data() + (trow_ + n) * H_ + u0);
        if (Cell::kHasCellState) std::copy_n(a_.c + n * H_ + u0, Hs, tape_->c_prev.data() + (trow_ + n) * H_ + u0);
      }
    }
  }

  // This slice's columns of the block's projection, for my rows (contiguous over the block's steps when
  // they are all the rows).
  void project_slice(Index col0, Index Hs) {
    const Index my_rows = n1_ - n0_;
    const bool whole_steps = my_rows == a_.batch;
    for (Index tb = t_lo_; tb < t_lo_ + block_len_; tb += whole_steps ? block_len_ : 1) {
      const Index count = whole_steps ? block_len_ * a_.batch : my_rows;
      project_columns(w_, a_.x + (tb * a_.batch + n0_) * w_.input_size, count, col0, G * Hs, xg_row(tb, n0_) + col0,
                      backwards_);
    }
  }

  void run_slice(long k) {
    const Index u0 = w_.unit_begin[k], Hs = w_.unit_begin[k + 1] - u0, col0 = G * u0;
    const Index product_cols = has_second_product<Cell>() ? (G - 1) * Hs : G * Hs;
    const Index my_rows = n1_ - n0_;
    if (plan_.schedule == StepSchedule::kClaimedSlices) save_slice_state(u0, Hs);
    if (block_start_ && !backwards_) project_slice(col0, Hs);
    const T* h_in = product_input();
    if (!panel_product(h_in + n0_ * H_out_, my_rows, H_out_, H_out_, w_.panels.hh_slice(k), product_cols, nullptr,
                       ws_.hg.data() + n0_ * GH_ + col0, GH_, backwards_))
      matmul(target(ws_.hg.block(n0_, col0, my_rows, product_cols)),
             operand(ConstMatrixMap<T>(h_in, a_.batch, H_out_).middleRows(n0_, my_rows)),
             operand(w_.w_hh_t.middleCols(col0, product_cols)));
    if (block_start_ && backwards_) project_slice(col0, Hs);
    for (Index n = n0_; n < n1_; ++n) cell_row(n, u0, Hs);
  }

  // The cell's fused pass (its first phase, for a two-phase cell) over one row of one slice.
  void cell_row(Index n, Index u0, Index Hs) {
    const Index SH = S_ * H_, col0 = G * u0;
    T* gates = kTraining ? tape_->gates.data() + (trow_ + n) * SH + S_ * u0 : ws_.gates.data() + n * SH + S_ * u0;
    T* y_row = a_.y + (trow_ + n) * a_.y_stride;
    if (!active_(n)) {  // the sequence has ended: it keeps its state and outputs zeros
      if (kTraining) std::fill(gates, gates + S_ * Hs, T(0));
      if (!project_) {
        std::copy(h_cur_ + n * H_ + u0, h_cur_ + n * H_ + u0 + Hs, h_next_ + n * H_ + u0);
        std::fill(y_row + u0, y_row + u0 + Hs, T(0));
        if (a_.recurrent_mask) mask_columns(n, u0, Hs, h_next_, masked_next_);
      }
      return;
    }
    row_.units = Hs;
    row_.xg = xg_row(t_, n) + col0;
    row_.hg = ws_.hg.data() + n * GH_ + col0;
    row_.bias_h = w_.bias_h.data() + col0;
    row_.h_prev = h_cur_ + n * H_out_ + u0;
    row_.c = Cell::kHasCellState ? a_.c + n * H_ + u0 : nullptr;
    row_.gates = gates;
    row_.h = project_ ? ws_.m.data() + n * H_ + u0 : h_next_ + n * H_out_ + u0;
    row_.rh = ws_.m.data() + n * H_ + u0;
    row_.peephole = w_.peephole_vectors ? w_.peep.data() + w_.peephole_vectors * u0 : nullptr;
    row_.row_params = w_.row_params.data();
    if (zoneout_ && Cell::kHasCellState) std::copy_n(row_.c, Hs, ws_.c_old.data() + n * H_ + u0);
    if constexpr (has_second_product<Cell>()) {
      Cell::forward_row_first(row_);
    } else {
      Cell::forward_row(row_);
      if (!project_) finish_units(n, u0, Hs);
    }
  }

  void run_my_slices() {
    for (long j = 0; j < k1_ - k0_; ++j) run_slice(backwards_ ? k1_ - 1 - j : k0_ + j);
  }

  // My slices first, then any that another member has not claimed yet, each list in the sweep's order.
  void claimed_step(Index s) {
    const long K = w_.slices(), mine = k1_ - k0_, others = K - mine;
    for (long i = 0; i < K; ++i) {
      const long j = plan_.claim_others_first ? (i + mine) % K : i;
      long k;
      if (j < mine)
        k = backwards_ ? k1_ - 1 - j : k0_ + j;
      else
        k = (k1_ + (backwards_ ? others - 1 - (j - mine) : j - mine)) % K;
      if (team_.claims->claim(static_cast<int>(k), s)) {
        run_slice(k);
        team_.claims->finish();
      }
    }
    team_.claims->wait_step(s);
  }

  void step_at_barrier() {
    save_state_columns();
    run_my_slices();
    if constexpr (has_second_product<Cell>()) {
      team_.sync();  // every unit's r ⊙ h is in ws.m
      candidate_phase();
    }
    if (project_) {
      team_.sync();  // every unit's o ⊙ tanh(c) is in ws.m
      project_output();
    }
    team_.sync();
  }

  // Second phase (StepPhases::kSecondProduct): the last gate block's product of the first phase's output
  // (the reset-before GRU's U_n (r ⊙ h)), then the rest of the cell.
  void candidate_phase() {
    for (long k = k0_; k < k1_; ++k) {
      const Index u0 = w_.unit_begin[k], Hs = w_.unit_begin[k + 1] - u0, col0 = G * u0;
      // The last gate block's panels start at panel (G-1)*Hs/16 of the slice when Hs fills whole panels.
      const Index last = col0 + (G - 1) * Hs;
      const S* last_panels = w_.panels.hh_slice(k);
      if (last_panels) last_panels += ((G - 1) * Hs / kPanelWidth) * H_ * kPanelWidth;
      if (Hs % kPanelWidth != 0 ||
          !panel_product(ws_.m.data(), a_.batch, H_, H_, last_panels, Hs, nullptr, ws_.hg.data() + last, GH_))
        matmul(target(ws_.hg.middleCols(last, Hs)), operand(ws_.m), operand(w_.w_hh_t.middleCols(last, Hs)));
      for (Index n = 0; n < a_.batch; ++n) {
        if (!active_(n)) continue;  // the first phase kept its state
        row_.units = Hs;
        row_.xg = xg_row(t_, n) + col0;
        row_.hg = ws_.hg.data() + n * GH_ + col0;
        row_.bias_h = w_.bias_h.data() + col0;
        row_.h_prev = h_cur_ + n * H_ + u0;
        row_.gates = kTraining ? tape_->gates.data() + (trow_ + n) * S_ * H_ + S_ * u0
                               : ws_.gates.data() + n * S_ * H_ + S_ * u0;
        row_.h = h_next_ + n * H_ + u0;
        Cell::forward_row(row_);
        finish_units(n, u0, Hs);
      }
    }
  }

  // LSTM with projection: h' = (o ⊙ tanh(c')) · W_hrᵀ, my columns.
  void project_output() {
    MatrixMap<T> h_next_mat(h_next_, a_.batch, H_out_);
    for_my_chunks(team_, H_out_, kColumnChunk, [&](Index c0, Index width) {
      matmul(target(h_next_mat.middleCols(c0, width)), operand(ws_.m), operand(w_.w_hr_t.middleCols(c0, width)));
    });
    if (q1_ <= q0_) return;
    for (Index n = 0; n < a_.batch; ++n) {
      T* y_row = a_.y + (trow_ + n) * a_.y_stride;
      if (active_(n)) {
        std::copy(h_next_ + n * H_out_ + q0_, h_next_ + n * H_out_ + q1_, y_row + q0_);
      } else {
        std::copy(h_cur_ + n * H_out_ + q0_, h_cur_ + n * H_out_ + q1_, h_next_ + n * H_out_ + q0_);
        std::fill(y_row + q0_, y_row + q1_, T(0));
      }
      if (a_.recurrent_mask) mask_columns(n, q0_, q1_ - q0_, h_next_, masked_next_);
    }
  }

  const Team& team_;
  const LayerPlan& plan_;
  const LayerWeights<T, S>& w_;
  const LayerCall<T>& a_;
  LayerTape<T>* tape_;
  LayerWorkspace<T>& ws_;
  const Index H_, H_out_, GH_, S_;
  const bool project_;
  long k0_ = 0, k1_ = 0, q0_ = 0, q1_ = 0, n0_ = 0, n1_ = 0;  // my slices, columns and rows
  ActiveRows active_;
  T* h_cur_;
  T* h_next_;
  T* masked_cur_;   // recurrent dropout: h_cur ⊙ mask, and the next step's
  T* masked_next_;
  const bool zoneout_;
  Index t_lo_ = 0, block_len_;  // the projection block at hand
  // The step at hand.
  Index t_ = 0, trow_ = 0;
  bool block_start_ = false, backwards_ = false;
  CellRow<T> row_;
};

}  // namespace fusedrnn
