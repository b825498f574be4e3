// One direction of one layer over time, generic over the cell.
//
// Forward: the input projection of all T steps is one product before the time loop; each step is
// the cell's fused step (its recurrent product, the gate activations and the state update).
// Backward through time: each step is the cell's gate-gradient pass and its recurrent product;
// the gradients of the input, the input weights and the recurrent weights are big products over
// all T*N rows after the loop.
//
// Variable lengths (PyTorch's packed-sequence semantics without packing): at time t a sequence n is
// active while t < lengths[n]. Inactive sequences keep their state and output zeros, so the
// forward direction stops at each sequence's last step and the reverse direction starts there.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fusedrnn/layer_types.hpp"

namespace fusedrnn {

template <typename Cell, typename T>
struct Layer {
  static constexpr Index kGates = Cell::kGates;
  static constexpr Index kSavedGates = Cell::kSavedGates;

  // x: [T, N, I] layer input; lengths: [N] or nullptr; h: [N, H_out], c: [N, H] initial state in,
  // final state out; y: [T, N, *] this direction's H_out output columns, row stride y_stride;
  // tape: filled when kTraining.
  template <bool kTraining>
  static void forward(const LayerWeights<T>& w, Index steps, Index batch, bool reverse, const T* x,
                      const std::int64_t* lengths, T* h, T* c, T* y, Index y_stride, LayerTape<T>* tape) {
    const Index H = w.hidden_size, H_out = w.output_size, GH = kGates * H, SH = kSavedGates * H;
    const Index rows = steps * batch;

    Matrix<T> xg(rows, GH);  // [T*N, G*H]
    xg.noalias() = ConstMatrixMap<T>(x, rows, w.input_size) * w.w_ih.transpose();
    xg.rowwise() += Cell::input_bias(w);

    StepScratch<T> scratch;
    scratch.hg.resize(batch, GH);
    if (!kTraining) scratch.gates.resize(batch, SH);
    scratch.m.resize(batch, H);
    scratch.h_new.resize(batch, H_out);
    if (kTraining) {
      tape->gates.resize(static_cast<std::size_t>(rows * SH));
      tape->h_prev.resize(static_cast<std::size_t>(rows * H_out));
      if (Cell::kHasCellState) tape->c_prev.resize(static_cast<std::size_t>(rows * H));
    }

    std::vector<std::uint8_t> active(lengths ? batch : 0);
    ForwardStep<T> step;
    step.batch = batch;
    step.active = lengths ? active.data() : nullptr;
    step.h = h;
    step.c = c;
    step.y_stride = y_stride;
    for (Index s = 0; s < steps; ++s) {
      const Index t = reverse ? steps - 1 - s : s;
      if (lengths)
        for (Index n = 0; n < batch; ++n) active[n] = t < lengths[n];
      step.xg = xg.data() + t * batch * GH;
      step.y = y + t * batch * y_stride;
      if (kTraining) {
        step.saved_gates = tape->gates.data() + t * batch * SH;
        step.saved_h_prev = tape->h_prev.data() + t * batch * H_out;
        if (Cell::kHasCellState) step.saved_c_prev = tape->c_prev.data() + t * batch * H;
      }
      Cell::template forward_step<kTraining>(w, step, scratch);
    }
  }

  // x: [T, N, I] the layer input forward saw; dy: [T, N, *] gradient of this direction's output
  // columns, row stride dy_stride; dh: [N, H_out], dc: [N, H] gradient wrt the final state in,
  // wrt the initial state out; dx: [T, N, I] out; g: parameter gradients out (overwritten).
  static void backward(const LayerWeights<T>& w, Index steps, Index batch, bool reverse, const T* x,
                       const std::int64_t* lengths, const LayerTape<T>& tape, const T* dy, Index dy_stride,
                       T* dh, T* dc, T* dx, const LayerGrads<T>& g) {
    const Index H = w.hidden_size, H_out = w.output_size, GH = kGates * H, SH = kSavedGates * H;
    const Index rows = steps * batch;
    const bool project = w.proj_size > 0;

    Matrix<T> dg_in(rows, GH);                                      // [T*N, G*H]
    Matrix<T> dg_hid(Cell::kSeparateHiddenGrad ? rows : 0, GH);     // [T*N, G*H]
    Matrix<T> dh_out(project ? rows : 0, H_out);                    // [T*N, P]
    StepScratch<T> scratch;
    scratch.m.resize(batch, H);
    scratch.h_new.resize(batch, H_out);
    scratch.dh_prev.resize(batch, H_out);

    std::vector<std::uint8_t> active(lengths ? batch : 0);
    BackwardStep<T> step;
    step.batch = batch;
    step.active = lengths ? active.data() : nullptr;
    step.dh = dh;
    step.dc = dc;
    step.dy_stride = dy_stride;
    for (Index s = steps - 1; s >= 0; --s) {
      const Index t = reverse ? steps - 1 - s : s;
      if (lengths)
        for (Index n = 0; n < batch; ++n) active[n] = t < lengths[n];
      step.gates = tape.gates.data() + t * batch * SH;
      step.h_prev = tape.h_prev.data() + t * batch * H_out;
      if (Cell::kHasCellState) step.c_prev = tape.c_prev.data() + t * batch * H;
      step.dy = dy + t * batch * dy_stride;
      step.dg_in = dg_in.data() + t * batch * GH;
      step.dg_hid = Cell::kSeparateHiddenGrad ? dg_hid.data() + t * batch * GH : step.dg_in;
      step.dh_out = project ? dh_out.data() + t * batch * H_out : nullptr;
      Cell::backward_step(w, step, scratch);
    }

    // The big products over all steps.
    const ConstMatrixMap<T> x_all(x, rows, w.input_size);
    MatrixMap<T>(dx, rows, w.input_size).noalias() = dg_in * w.w_ih;
    MatrixMap<T>(g.w_ih, GH, w.input_size).noalias() = dg_in.transpose() * x_all;
    // Column sums go through an Eigen-owned (aligned) row so the summation order, and so the
    // result's last bit, does not depend on where the caller's buffer happens to sit.
    const Matrix<T>& dg_h = Cell::kSeparateHiddenGrad ? dg_hid : dg_in;
    RowVector<T> column_sum(GH);
    if (g.b_ih) {
      column_sum.noalias() = dg_in.colwise().sum();
      std::copy(column_sum.data(), column_sum.data() + GH, g.b_ih);
    }
    if (g.b_hh) {
      column_sum.noalias() = dg_h.colwise().sum();
      std::copy(column_sum.data(), column_sum.data() + GH, g.b_hh);
    }
    const ConstMatrixMap<T> h_prev_all(tape.h_prev.data(), rows, H_out);
    Cell::recurrent_weight_grad(w, tape, rows, dg_h, h_prev_all, g.w_hh);
    if (project) {
      // dW_hr = dh_outᵀ · m, with m = o ⊙ tanh(c') recomputed from the saved gates.
      Matrix<T> m(rows, H);
      for (Index r = 0; r < rows; ++r) {
        const T* gates = tape.gates.data() + r * SH;
        ConstVec<T> i(gates, H), f(gates + H, H), gg(gates + 2 * H, H), o(gates + 3 * H, H);
        ConstVec<T> c_prev(tape.c_prev.data() + r * H, H);
        m.row(r).array() = (o * (f * c_prev + i * gg).tanh()).transpose();
      }
      MatrixMap<T>(g.w_hr, w.proj_size, H).noalias() = dh_out.transpose() * m;
    }
  }
};

}  // namespace fusedrnn
