// Backward through time for one layer-direction, run by every member of a team: per step the cell's
// gate-gradient pass on each member's slices (or rows), a barrier, then each member's columns of
// dh = dg · W_hh. The products over all steps follow the loop (weight_gradients.hpp).
// Zoneout splits the gradient of each unit's h' (and c') between its new value (the cell's pass) and the
// previous one (added to dh entering the step); recurrent dropout masks dg · W_hh.
#pragma once

#include <algorithm>
#include <utility>

#include "fusedrnn/layer/plan.hpp"
#include "fusedrnn/layer/weight_gradients.hpp"
#include "fusedrnn/layer/workspace.hpp"
#include "fusedrnn/matmul.hpp"

namespace fusedrnn {

// Training reads the weights in the compute type (LayerWeights<T>): narrower storage is for inference.
template <typename Cell, typename T>
class LayerBackward {
 public:
  static constexpr Index G = Cell::kGates;

  LayerBackward(const Team& team, const LayerPlan& plan, const LayerWeights<T>& w, const LayerGradCall<T>& call,
                const LayerTape<T>& tape, LayerWorkspace<T>& ws)
      : team_(team), w_(w), a_(call), tape_(tape), ws_(ws), H_(w.hidden_size), H_out_(w.output_size),
        P_(w.proj_size), GH_(G * w.hidden_size), S_(Cell::saved_gates(w.options)),
        by_rows_(plan.schedule == StepSchedule::kRowsPerMember), active_(call.lengths, call.batch),
        dh_cur_(call.dh), dh_next_(ws.h_alt.data()),
        dg_hid_(Cell::kSeparateHiddenGrad ? ws.dg_hid.data() : ws.dg_in.data()) {
    k1_ = w.slices();
    q1_ = H_out_;
    n1_ = call.batch;
    if (by_rows_) {
      team.share(call.batch, 1, n0_, n1_);
    } else {
      team.share(w.slices(), 1, k0_, k1_);
      team.share(H_out_, kColumnChunk, q0_, q1_);
    }
    row_.options = &w.options;
  }

  void run() {
    const Index V = w_.peephole_vectors;
    if (V > 0)  // the workspace serves every layer: start this one's sums from zero
      for (long k = k0_; k < k1_; ++k)
        std::fill(ws_.peephole_grad.data() + V * w_.unit_begin[k], ws_.peephole_grad.data() + V * w_.unit_begin[k + 1],
                  T(0));
    if (Cell::kPhases == StepPhases::kWholeRow && k0_ < k1_)  // one slice: its member sums every row
      std::fill(ws_.row_params_grad.data(), ws_.row_params_grad.data() + w_.row_params.size(), T(0));
    for (Index s = a_.steps - 1; s >= 0; --s) {
      if (team_.leaving(a_.steps - 1 - s)) break;
      step(s);
      std::swap(dh_cur_, dh_next_);
    }
    if (dh_cur_ != a_.dh)
      for (Index n = n0_; n < n1_; ++n)
        std::copy(dh_cur_ + n * H_out_ + q0_, dh_cur_ + n * H_out_ + q1_, a_.dh + n * H_out_ + q0_);
    if (by_rows_) {
      team_.sync();                         // every row's dg is known
      team_.share(w_.slices(), 1, k0_, k1_);  // the weight gradients are shared by slices
    }
    WeightGradients<Cell, T>(team_, w_, a_, tape_, ws_, k0_, k1_).run();
  }

 private:
  void step(Index s) {
    t_ = a_.reverse ? a_.steps - 1 - s : s;
    active_.at(t_);
    trow_ = t_ * a_.batch;
    if (P_ > 0) projection_grad();
    for (long k = k0_; k < k1_; ++k) gate_grads(k);
    if constexpr (has_second_product<Cell>()) reset_phase();
    if (by_rows_) {
      hidden_grad(0, H_out_);
    } else {
      team_.sync();  // the whole step's dg is known
      for_my_chunks(team_, H_out_, kColumnChunk, [this](Index c0, Index width) { hidden_grad(c0, width); });
      team_.sync();
    }
  }

  // LSTM with projection: ws.m = the gradient wrt o ⊙ tanh(c'), through W_hr.
  void projection_grad() {
    const T* dy_t = a_.dy + trow_ * a_.dy_stride;
    T* dh_out = ws_.dh_out.data() + trow_ * P_;
    for (Index n = 0; n < a_.batch; ++n)
      for (long q = q0_; q < q1_; ++q)
        dh_out[n * P_ + q] = active_(n) ? dh_cur_[n * P_ + q] + dy_t[n * a_.dy_stride + q] : T(0);
    team_.sync();
    for (long k = k0_; k < k1_; ++k) {
      const Index u0 = w_.unit_begin[k], Hs = w_.unit_begin[k + 1] - u0;
      matmul(target(ws_.m.middleCols(u0, Hs)), operand(ConstMatrixMap<T>(dh_out, a_.batch, P_)),
             transposed(w_.w_hr_t.middleRows(u0, Hs)));
    }
  }

  void fill_row(Index n, Index u0, Index Hs) {
    const Index col0 = G * u0, r = trow_ + n;
    row_.units = Hs;
    row_.gates = tape_.gates.data() + r * S_ * H_ + S_ * u0;
    row_.c_prev = Cell::kHasCellState ? tape_.c_prev.data() + r * H_ + u0 : nullptr;
    row_.h_prev = tape_.h_prev.data() + r * H_out_ + u0;
    row_.dh = ws_.m.data() + n * H_ + u0;
    row_.drh = has_second_product<Cell>() ? ws_.drh.data() + n * H_ + u0 : nullptr;
    row_.dc = Cell::kHasCellState ? a_.dc + n * H_ + u0 : nullptr;
    row_.dg_in = ws_.dg_in.data() + r * GH_ + col0;
    row_.dg_hid = dg_hid_ + r * GH_ + col0;
    row_.dh_direct = Cell::kDirectHiddenGrad ? ws_.direct.data() + n * H_ + u0 : nullptr;
    row_.peephole = w_.peephole_vectors ? w_.peep.data() + w_.peephole_vectors * u0 : nullptr;
    row_.peephole_grad = w_.peephole_vectors ? ws_.peephole_grad.data() + w_.peephole_vectors * u0 : nullptr;
    row_.row_params = w_.row_params.data();
    row_.row_params_grad = ws_.row_params_grad.data();
  }

  // The gate gradients of slice k (the first phase of a two-phase cell), my rows. ws.m holds the
  // gradient wrt each unit's new h (LSTM with projection: wrt o ⊙ tanh(c')).
  void gate_grads(long k) {
    const Index u0 = w_.unit_begin[k], Hs = w_.unit_begin[k + 1] - u0, col0 = G * u0;
    const T* dy_t = a_.dy + trow_ * a_.dy_stride;
    for (Index n = n0_; n < n1_; ++n) {
      if (!active_(n)) {
        std::fill_n(ws_.dg_in.data() + (trow_ + n) * GH_ + col0, G * Hs, T(0));
        if (Cell::kSeparateHiddenGrad) std::fill_n(dg_hid_ + (trow_ + n) * GH_ + col0, G * Hs, T(0));
        continue;
      }
      if (P_ == 0)
        Vec<T>(ws_.m.data() + n * H_ + u0, Hs) =
            ConstVec<T>(dh_cur_ + n * H_ + u0, Hs) + ConstVec<T>(dy_t + n * a_.dy_stride + u0, Hs);
      fill_row(n, u0, Hs);
      if (a_.zoneout) split_zoned(n, u0, Hs);
      if constexpr (has_second_product<Cell>())
        Cell::backward_row_first(row_);
      else
        Cell::backward_row(row_);
      if (a_.zoneout && Cell::kHasCellState)
        Vec<T>(row_.dc, Hs) += ConstVec<T>(ws_.zoned_c.data() + n * H_ + u0, Hs);
    }
  }

  // Zoneout: h' = h + k ⊙ (h_new - h), so of the gradient g wrt h', k ⊙ g goes to h_new (the cell's pass)
  // and (1 - k) ⊙ g to h entering the step (hidden_grad adds ws.zoned); likewise for c.
  void split_zoned(Index n, Index u0, Index Hs) {
    const Index Z = Cell::kHasCellState ? 2 : 1;
    const ConstVec<T> k(a_.zoneout + (trow_ + n) * Z * H_ + u0, Hs);
    Vec<T> dh(ws_.m.data() + n * H_ + u0, Hs);
    Vec<T>(ws_.zoned.data() + n * H_ + u0, Hs) = (T(1) - k) * dh;
    dh *= k;
    if (Cell::kHasCellState) {
      const ConstVec<T> k_c(a_.zoneout + (trow_ + n) * Z * H_ + H_ + u0, Hs);
      Vec<T> dc(row_.dc, Hs);
      Vec<T>(ws_.zoned_c.data() + n * H_ + u0, Hs) = (T(1) - k_c) * dc;
      dc *= k_c;
    }
  }

  // Reset-before GRU: d(r ⊙ h)[:, q] = Σ_k dn_k · U_n,k[:, q], U_n,k = (columns n of slice k of w_hh_t)ᵀ,
  // then the rest of the cell's gradient.
  void reset_phase() {
    team_.sync();  // every unit's dn is in dg_in
    const ConstMatrixMap<T> dg_t(ws_.dg_in.data() + trow_ * GH_, a_.batch, GH_);
    for_my_chunks(team_, H_, kColumnChunk, [&](Index c0, Index width) {
      auto drh = ws_.drh.middleCols(c0, width);
      drh.setZero();
      for (Index k = 0; k < w_.slices(); ++k) {
        const Index u0 = w_.unit_begin[k], Hs = w_.unit_begin[k + 1] - u0, ncol = G * u0 + (G - 1) * Hs;
        matmul(target(drh), operand(dg_t.middleCols(ncol, Hs)), transposed(w_.w_hh_t.block(c0, ncol, width, Hs)),
               Accumulate::kYes);
      }
    });
    team_.sync();
    for (long k = k0_; k < k1_; ++k) {
      const Index u0 = w_.unit_begin[k], Hs = w_.unit_begin[k + 1] - u0;
      for (Index n = 0; n < a_.batch; ++n) {
        if (!active_(n)) continue;
        fill_row(n, u0, Hs);
        Cell::backward_row_second(row_);
      }
    }
  }

  // dh entering the step, my rows and columns [c0, c0 + width).
  void hidden_grad(Index c0, Index width) {
    const Index count = n1_ - n0_;
    const T* dg_t = dg_hid_ + (trow_ + n0_) * GH_;
    auto block = MatrixMap<T>(dh_next_, a_.batch, H_out_).block(n0_, c0, count, width);
    // c0 is a multiple of kColumnChunk, so its panel starts at column c0.
    if (!panel_product(dg_t, count, GH_, GH_, w_.panels.hh_t_from(c0, GH_), width, nullptr, dh_next_ + n0_ * H_out_ + c0, H_out_))
      matmul(target(block), operand(ConstMatrixMap<T>(dg_t, count, GH_)), transposed(w_.w_hh_t.middleRows(c0, width)));
    if (a_.recurrent_mask)
      block.array() *= ConstMatrixMap<T>(a_.recurrent_mask, a_.batch, H_out_).block(n0_, c0, count, width).array();
    if (Cell::kDirectHiddenGrad) block += ws_.direct.block(n0_, c0, count, width);
    if (a_.zoneout) block += ws_.zoned.block(n0_, c0, count, width);
    for (Index n = n0_; n < n1_; ++n)
      if (!active_(n)) std::copy(dh_cur_ + n * H_out_ + c0, dh_cur_ + n * H_out_ + c0 + width, dh_next_ + n * H_out_ + c0);
  }

  const Team& team_;
  const LayerWeights<T>& w_;
  const LayerGradCall<T>& a_;
  const LayerTape<T>& tape_;
  LayerWorkspace<T>& ws_;
  const Index H_, H_out_, P_, GH_, S_;
  const bool by_rows_;
  long k0_ = 0, k1_ = 0, q0_ = 0, q1_ = 0, n0_ = 0, n1_ = 0;  // my slices, columns and rows
  ActiveRows active_;
  T* dh_cur_;
  T* dh_next_;
  T* const dg_hid_;
  Index t_ = 0, trow_ = 0;  // the step at hand
  CellGradRow<T> row_;
};

}  // namespace fusedrnn
