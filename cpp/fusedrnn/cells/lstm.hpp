// LSTM cell, PyTorch's equations (gate order i, f, g, o), optional projection (done by the layer):
//   i = σ(W_i x + b_ii + U_i h + b_hi)     f = σ(W_f x + b_if + U_f h + b_hf)
//   g = tanh(W_g x + b_ig + U_g h + b_hg)  o = σ(W_o x + b_io + U_o h + b_ho)
//   c' = f ⊙ c + i ⊙ g                      m = o ⊙ tanh(c')      h' = m, or W_hr m with projection
// Both biases fold into the input projection. Forward saves i, f, g, o (activated) and the layer
// saves h and c entering the step; backward recomputes c' and tanh(c') from them.
#pragma once

#include "fusedrnn/cells/traits.hpp"

namespace fusedrnn {

template <typename T>
struct LstmCell {
  static constexpr const char* kName = "lstm";
  static constexpr Index kGates = 4;
  static constexpr Index kSavedGates = 4;  // i, f, g, o (and their clipped inputs when clipping)
  static constexpr bool kHasCellState = true;
  static constexpr unsigned kOptions =
      kOptionProjection | kOptionPeephole | kOptionClip | kOptionInputForget | kOptionHardGates;
  static constexpr Index kPeepholeVectors = 3;  // p_i, p_f, p_o
  static constexpr StepPhases kPhases = StepPhases::kPointwise;
  static constexpr bool kSeparateHiddenGrad = false;
  static constexpr bool kDirectHiddenGrad = false;

  // With clip, forward also saves the activations' inputs before clipping (backward's mask).
  static Index saved_gates(const CellOptions<T>& options) { return options.clip > 0 ? 8 : 4; }

  static void split_bias(const RowVector<T>& b_ih, const RowVector<T>& b_hh, Index, RowVector<T>& bias_x,
                         RowVector<T>& bias_h) {
    bias_x = b_ih + b_hh;
    bias_h.setZero(b_ih.size());
  }

  // Options (ONNX's LSTM): peepholes p_i, p_f on c and p_o on c'; clip bounds every gate's
  // activation input to [-clip, clip]; input_forget couples f = 1 - i.
  static void forward_row(const CellRow<T>& r) {
    const Index H = r.units;
    const CellOptions<T>& opt = *r.options;
    Vec<T> pre(r.gates, 4 * H);
    pre = ConstVec<T>(r.xg, 4 * H) + ConstVec<T>(r.hg, 4 * H);
    Vec<T> i_f(r.gates, 2 * H), i(r.gates, H), f(r.gates + H, H), g(r.gates + 2 * H, H), o(r.gates + 3 * H, H);
    Vec<T> c(r.c, H);
    if (opt.peephole || opt.clip > 0 || opt.input_forget) {
      if (opt.peephole) {
        i += ConstVec<T>(r.peephole, H) * c;
        f += ConstVec<T>(r.peephole + H, H) * c;
      }
      if (opt.clip > 0) {
        Vec<T>(r.gates + 4 * H, 3 * H) = pre.head(3 * H);
        clip_into(pre.head(3 * H), pre.head(3 * H), opt.clip);
      }
      gate_into(i, i, opt.hard_gates);
      if (opt.input_forget)
        f = T(1) - i;
      else
        gate_into(f, f, opt.hard_gates);
      tanh_into(g, g);
      c = f * c + i * g;
      if (opt.peephole) o += ConstVec<T>(r.peephole + 2 * H, H) * c;
      if (opt.clip > 0) {
        Vec<T>(r.gates + 7 * H, H) = o;
        clip_into(o, o, opt.clip);
      }
      gate_into(o, o, opt.hard_gates);
      Vec<T>(r.h, H) = o * c.tanh();
      return;
    }
    gate_into(i_f, i_f, opt.hard_gates);
    tanh_into(g, g);
    gate_into(o, o, opt.hard_gates);
    c = f * c + i * g;
    Vec<T>(r.h, H) = o * c.tanh();
  }

  static void backward_row(const CellGradRow<T>& r) {
    const Index H = r.units;
    const CellOptions<T>& opt = *r.options;
    ConstVec<T> i(r.gates, H), f(r.gates + H, H), g(r.gates + 2 * H, H), o(r.gates + 3 * H, H);
    ConstVec<T> c_prev(r.c_prev, H), dm(r.dh, H);
    const Eigen::Array<T, Eigen::Dynamic, 1> c_new = f * c_prev + i * g;
    const Eigen::Array<T, Eigen::Dynamic, 1> tanh_c = c_new.tanh();
    Vec<T> dc(r.dc, H);
    Vec<T> di(r.dg_in, H), df(r.dg_in + H, H), dg(r.dg_in + 2 * H, H), d_o(r.dg_in + 3 * H, H);
    d_o = dm * tanh_c;
    mul_gate_grad(d_o, o, opt.hard_gates);
    if (opt.clip > 0) mul_clip_grad(d_o, ConstVec<T>(r.gates + 7 * H, H), opt.clip);
    dc += dm * o * tanh_grad(tanh_c);  // now the total gradient wrt c'
    if (opt.peephole) dc += d_o * ConstVec<T>(r.peephole + 2 * H, H);
    di = dc * g;
    dg = dc * i * tanh_grad(g);
    if (opt.input_forget) {
      di -= dc * c_prev;  // f = 1 - i
      df.setZero();
    } else {
      df = dc * c_prev;
      mul_gate_grad(df, f, opt.hard_gates);
    }
    mul_gate_grad(di, i, opt.hard_gates);
    if (opt.clip > 0) {
      mul_clip_grad(Vec<T>(r.dg_in, 3 * H), ConstVec<T>(r.gates + 4 * H, 3 * H), opt.clip);
    }
    dc *= f;  // gradient wrt c entering the step
    if (opt.peephole) {
      dc += di * ConstVec<T>(r.peephole, H) + df * ConstVec<T>(r.peephole + H, H);
      Vec<T>(r.peephole_grad, H) += di * c_prev;
      Vec<T>(r.peephole_grad + H, H) += df * c_prev;
      Vec<T>(r.peephole_grad + 2 * H, H) += d_o * c_new;
    }
  }

  // o ⊙ tanh(c'), the value the projection multiplies, from what forward saved.
  static void output_from_tape(const CellGradRow<T>& r, T* out) {
    const Index H = r.units;
    ConstVec<T> i(r.gates, H), f(r.gates + H, H), g(r.gates + 2 * H, H), o(r.gates + 3 * H, H);
    Vec<T>(out, H) = o * (f * ConstVec<T>(r.c_prev, H) + i * g).tanh();
  }
};

static_assert(check_cell<LstmCell<float>, float>() && check_cell<LstmCell<double>, double>());

}  // namespace fusedrnn
