// LSTM cell, PyTorch's equations (gate order i, f, g, o), optional projection:
//   i = σ(W_i x + b_ii + U_i h + b_hi)     f = σ(W_f x + b_if + U_f h + b_hf)
//   g = tanh(W_g x + b_ig + U_g h + b_hg)  o = σ(W_o x + b_io + U_o h + b_ho)
//   c' = f ⊙ c + i ⊙ g                      m = o ⊙ tanh(c')      h' = m, or W_hr m with projection
// Both biases fold into the input projection. Forward saves i, f, g, o (activated), h and c
// entering the step; backward recomputes c' and tanh(c') from them.
#pragma once

#include <algorithm>

#include "fusedrnn/activations.hpp"
#include "fusedrnn/cells/common.hpp"
#include "fusedrnn/layer_types.hpp"

namespace fusedrnn {

template <typename T>
struct LstmCell {
  static constexpr Index kGates = 4;
  static constexpr Index kSavedGates = 4;  // i, f, g, o
  static constexpr bool kHasCellState = true;
  static constexpr bool kSeparateHiddenGrad = false;

  // [G*H] bias added once to the input projection.
  static RowVector<T> input_bias(const LayerWeights<T>& w) { return w.b_ih + w.b_hh; }

  template <bool kTraining>
  static void forward_step(const LayerWeights<T>& w, const ForwardStep<T>& s, StepScratch<T>& scratch) {
    const Index batch = s.batch, H = w.hidden_size, H_out = w.output_size, GH = kGates * H;
    const bool project = w.proj_size > 0;
    if (kTraining) {
      std::copy(s.h, s.h + batch * H_out, s.saved_h_prev);
      std::copy(s.c, s.c + batch * H, s.saved_c_prev);
    }
    scratch.hg.noalias() = ConstMatrixMap<T>(s.h, batch, H_out) * w.w_hh_t;
    for (Index n = 0; n < batch; ++n) {
      const bool active = row_active(s.active, n);
      T* gates = kTraining ? s.saved_gates + n * GH : scratch.gates.data() + n * GH;
      if (!active) {
        if (kTraining) std::fill(gates, gates + GH, T(0));
        if (!project) write_output_row(false, gates, H_out, s.y + n * s.y_stride);
        continue;
      }
      Vec<T> pre(gates, GH);
      pre = ConstVec<T>(s.xg + n * GH, GH) + ConstVec<T>(scratch.hg.data() + n * GH, GH);
      Vec<T> i_f(gates, 2 * H), g(gates + 2 * H, H), o(gates + 3 * H, H);
      Vec<T> i(gates, H), f(gates + H, H);
      sigmoid_into(i_f, i_f);
      tanh_into(g, g);
      sigmoid_into(o, o);
      Vec<T> c(s.c + n * H, H);
      c = f * c + i * g;
      T* m_row = project ? scratch.m.data() + n * H : s.h + n * H_out;
      Vec<T>(m_row, H) = o * c.tanh();
      if (!project) std::copy(m_row, m_row + H, s.y + n * s.y_stride);
    }
    if (project) {
      scratch.h_new.noalias() = scratch.m * w.w_hr_t;
      copy_active_rows(s.active, batch, H_out, scratch.h_new.data(), s.h);
      for (Index n = 0; n < batch; ++n)
        write_output_row(row_active(s.active, n), s.h + n * H_out, H_out, s.y + n * s.y_stride);
    }
  }

  static void backward_step(const LayerWeights<T>& w, const BackwardStep<T>& s, StepScratch<T>& scratch) {
    const Index batch = s.batch, H = w.hidden_size, H_out = w.output_size, GH = kGates * H;
    const bool project = w.proj_size > 0;
    // dm: [N, H] gradient wrt o ⊙ tanh(c'). With projection it comes through W_hr.
    if (project) {
      for (Index n = 0; n < batch; ++n) {
        Vec<T> dh_out(s.dh_out + n * H_out, H_out);
        if (row_active(s.active, n))
          dh_out = ConstVec<T>(s.dh + n * H_out, H_out) + ConstVec<T>(s.dy + n * s.dy_stride, H_out);
        else
          dh_out.setZero();
      }
      // w_hr_t is [H, P]: dm = dh_out · W_hr = dh_out · w_hr_tᵀ
      scratch.m.noalias() = ConstMatrixMap<T>(s.dh_out, batch, H_out) * w.w_hr_t.transpose();
    }
    for (Index n = 0; n < batch; ++n) {
      Vec<T> dg(s.dg_in + n * GH, GH);
      if (!row_active(s.active, n)) {
        dg.setZero();
        continue;
      }
      const T* gates = s.gates + n * GH;
      ConstVec<T> i(gates, H), f(gates + H, H), g(gates + 2 * H, H), o(gates + 3 * H, H);
      ConstVec<T> c_prev(s.c_prev + n * H, H);
      Eigen::Array<T, Eigen::Dynamic, 1> tanh_c = (f * c_prev + i * g).tanh();
      Eigen::Array<T, Eigen::Dynamic, 1> dm(H);
      if (project)
        dm = ConstVec<T>(scratch.m.data() + n * H, H);
      else
        dm = ConstVec<T>(s.dh + n * H_out, H) + ConstVec<T>(s.dy + n * s.dy_stride, H);
      Vec<T> dc(s.dc + n * H, H);
      dc += dm * o * tanh_grad(tanh_c);  // dc now: total gradient wrt c'
      Vec<T>(dg.data(), H) = dc * g * sigmoid_grad(i);
      Vec<T>(dg.data() + H, H) = dc * c_prev * sigmoid_grad(f);
      Vec<T>(dg.data() + 2 * H, H) = dc * i * tanh_grad(g);
      Vec<T>(dg.data() + 3 * H, H) = dm * tanh_c * sigmoid_grad(o);
      dc *= f;  // gradient wrt c entering the step
    }
    // dh entering the step = dg · W_hh = dg · w_hh_tᵀ (inactive rows pass dh through).
    scratch.dh_prev.noalias() = ConstMatrixMap<T>(s.dg_in, batch, GH) * w.w_hh_t.transpose();
    copy_active_rows(s.active, batch, H_out, scratch.dh_prev.data(), s.dh);
  }

  static void recurrent_weight_grad(const LayerWeights<T>&, const LayerTape<T>&, Index, const Matrix<T>& dg,
                                    const ConstMatrixMap<T>& h_prev, T* dw_hh) {
    plain_recurrent_weight_grad(dg, h_prev, dw_hh);
  }
};

}  // namespace fusedrnn
