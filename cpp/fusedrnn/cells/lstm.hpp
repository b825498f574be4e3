// LSTM cell, PyTorch's equations (gate order i, f, g, o), optional projection (done by the layer):
//   i = σ(W_i x + b_ii + U_i h + b_hi)     f = σ(W_f x + b_if + U_f h + b_hf)
//   g = tanh(W_g x + b_ig + U_g h + b_hg)  o = σ(W_o x + b_io + U_o h + b_ho)
//   c' = f ⊙ c + i ⊙ g                      m = o ⊙ tanh(c')      h' = m, or W_hr m with projection
// Both biases fold into the input projection. Forward saves i, f, g, o (activated) and the layer
// saves h and c entering the step; backward recomputes c' and tanh(c') from them.
#pragma once

#include "fusedrnn/cells/common.hpp"

namespace fusedrnn {

template <typename T>
struct LstmCell {
  static constexpr Index kGates = 4;
  static constexpr Index kSavedGates = 4;  // i, f, g, o
  static constexpr bool kHasCellState = true;
  static constexpr bool kTwoPhase = false;
  static constexpr bool kSeparateHiddenGrad = false;
  static constexpr bool kDirectHiddenGrad = false;

  static void split_bias(const RowVector<T>& b_ih, const RowVector<T>& b_hh, Index, RowVector<T>& bias_x,
                         RowVector<T>& bias_h) {
    bias_x = b_ih + b_hh;
    bias_h.setZero(b_ih.size());
  }

  static void forward_row(const CellRow<T>& r) {
    const Index H = r.units;
    Vec<T> pre(r.gates, 4 * H);
    pre = ConstVec<T>(r.xg, 4 * H) + ConstVec<T>(r.hg, 4 * H);
    Vec<T> i_f(r.gates, 2 * H), i(r.gates, H), f(r.gates + H, H), g(r.gates + 2 * H, H), o(r.gates + 3 * H, H);
    sigmoid_into(i_f, i_f);
    tanh_into(g, g);
    sigmoid_into(o, o);
    Vec<T> c(r.c, H);
    c = f * c + i * g;
    Vec<T>(r.h, H) = o * c.tanh();
  }

  static void backward_row(const CellGradRow<T>& r) {
    const Index H = r.units;
    ConstVec<T> i(r.gates, H), f(r.gates + H, H), g(r.gates + 2 * H, H), o(r.gates + 3 * H, H);
    ConstVec<T> c_prev(r.c_prev, H), dm(r.dh, H);
    const Eigen::Array<T, Eigen::Dynamic, 1> tanh_c = (f * c_prev + i * g).tanh();
    Vec<T> dc(r.dc, H);
    dc += dm * o * tanh_grad(tanh_c);  // now the total gradient wrt c'
    Vec<T>(r.dg_in, H) = dc * g * sigmoid_grad(i);
    Vec<T>(r.dg_in + H, H) = dc * c_prev * sigmoid_grad(f);
    Vec<T>(r.dg_in + 2 * H, H) = dc * i * tanh_grad(g);
    Vec<T>(r.dg_in + 3 * H, H) = dm * tanh_c * sigmoid_grad(o);
    dc *= f;  // gradient wrt c entering the step
  }
};

}  // namespace fusedrnn
