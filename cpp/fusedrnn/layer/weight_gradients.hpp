// The products over all T*N rows after backward's time loop: the gradient of the layer input and of every
// weight, each member its share, and the weights' gradients back in PyTorch's row order.
#pragma once

#include <algorithm>

#include "fusedrnn/layer/plan.hpp"
#include "fusedrnn/layer/workspace.hpp"
#include "fusedrnn/matmul.hpp"

namespace fusedrnn {

template <typename Cell, typename T>
class WeightGradients {
 public:
  static constexpr Index G = Cell::kGates;

  // k0, k1: the slices whose weight rows this member sums.
  WeightGradients(const Team& team, const LayerWeights<T>& w, const LayerGradCall<T>& call, const LayerTape<T>& tape,
                  LayerWorkspace<T>& ws, long k0, long k1)
      : team_(team), w_(w), a_(call), tape_(tape), ws_(ws), k0_(k0), k1_(k1), H_(w.hidden_size),
        GH_(G * w.hidden_size), rows_(call.steps * call.batch), project_(w.proj_size > 0),
        dg_hid_(Cell::kSeparateHiddenGrad ? ws.dg_hid : ws.dg_in) {}

  void run() {
    long r0, r1;
    team_.share(rows_, 4, r0, r1);
    for_my_chunks(team_, rows_, kRowChunk, [&](Index c0, Index count) {
      matmul(target(MatrixMap<T>(a_.dx, rows_, w_.input_size).middleRows(c0, count)),
             operand(ws_.dg_in.middleRows(c0, count)), operand(w_.w_ih));
    });
    if (project_ || has_second_product<Cell>()) mixed_rows(r0, r1);
    if (a_.recurrent_mask) masked_rows(r0, r1);
    team_.sync();
    if (project_)
      for_my_chunks(team_, w_.proj_size, kColumnChunk, [&](Index p0, Index count) {
        matmul(target(MatrixMap<T>(a_.grads.w_hr, w_.proj_size, H_).middleRows(p0, count)),
               transposed(ws_.dh_out.middleCols(p0, count)), operand(ws_.rows_h));
      });
    if constexpr (Cell::kPhases == StepPhases::kWholeRow) {
      // One slice of all units: the team shares its rows of the weight gradients instead.
      for_my_chunks(team_, GH_, kColumnChunk, [&](Index p0, Index count) { row_products(p0, count); });
      if (team_.rank == 0) Cell::unpack_row_gradients(ws_.row_params_grad.data(), H_, a_.grads);
    } else {
      for (long k = k0_; k < k1_ && !team_.stopping(); ++k) {
        slice_products(k);
        unpack_slice(k);
      }
    }
    team_.sync();
  }

 private:
  // Per-row inputs of the weight gradients that mix units of several slices, rows [r0, r1), recomputed
  // by the cell from the tape: h before the projection, or what the second product multiplies.
  void mixed_rows(long r0, long r1) {
    const Index S = Cell::saved_gates(w_.options);
    CellGradRow<T> row;
    for (long r = r0; r < r1; ++r)
      for (Index k = 0; k < w_.slices(); ++k) {
        const Index u0 = w_.unit_begin[k];
        row.units = w_.unit_begin[k + 1] - u0;
        row.gates = tape_.gates.data() + r * S * H_ + S * u0;
        row.c_prev = Cell::kHasCellState ? tape_.c_prev.data() + r * H_ + u0 : nullptr;
        row.h_prev = tape_.h_prev.data() + r * w_.output_size + u0;
        T* out = ws_.rows_h.row(r).data() + u0;
        if constexpr (has_second_product<Cell>())
          Cell::second_input_from_tape(row, out);
        else if constexpr ((Cell::kOptions & kOptionProjection) != 0)
          Cell::output_from_tape(row, out);
      }
  }

  // Recurrent dropout: what the recurrent product multiplied, h entering each step ⊙ its row's mask.
  void masked_rows(long r0, long r1) {
    const Index H_out = w_.output_size;
    for (long r = r0; r < r1; ++r)
      ws_.rows_masked.row(r) = ConstMatrixMap<T>(tape_.h_prev.data(), rows_, H_out).row(r).cwiseProduct(
          ConstMatrixMap<T>(a_.recurrent_mask, a_.batch, H_out).row(r % a_.batch));
  }

  // Slice k's rows of grad_ih and grad_hh (packed order): sums over all rows, taken kGradientRows at a
  // time so that a stop is seen within a chunk.
  void slice_products(long k) {
    const Index u0 = w_.unit_begin[k], Hs = w_.unit_begin[k + 1] - u0, col0 = G * u0, width = G * Hs;
    const ConstMatrixMap<T> x_all(a_.x, rows_, w_.input_size);
    const ConstMatrixMap<T> h_prev_all(a_.recurrent_mask ? ws_.rows_masked.data() : tape_.h_prev.data(), rows_,
                                       w_.output_size);
    auto grad_ih = ws_.grad_ih.block(0, 0, GH_, w_.input_size).middleRows(col0, width);
    // Reset-before GRU: the candidate's rows of grad_hh come from r ⊙ h_prev instead.
    const Index hidden_width = has_second_product<Cell>() ? (G - 1) * Hs : width;
    auto grad_hh = ws_.grad_hh.middleRows(col0, hidden_width);
    auto grad_hn = ws_.grad_hh.middleRows(col0 + (G - 1) * Hs, has_second_product<Cell>() ? Hs : 0);
    for (Index r0 = 0; r0 < rows_ && !team_.stopping(); r0 += kGradientRows) {
      const Index count = std::min(kGradientRows, rows_ - r0);
      auto dg_ih = ws_.dg_in.block(r0, col0, count, width);
      auto dg_hh = dg_hid_.block(r0, col0, count, hidden_width);
      const Accumulate sum = r0 == 0 ? Accumulate::kNo : Accumulate::kYes;
      matmul(target(grad_ih), transposed(dg_ih), operand(x_all.middleRows(r0, count)), sum);
      matmul(target(grad_hh), transposed(dg_hh), operand(h_prev_all.middleRows(r0, count)), sum);
      if constexpr (has_second_product<Cell>()) {
        auto dg_n = ws_.dg_in.block(r0, col0 + (G - 1) * Hs, count, Hs);
        matmul(target(grad_hn), transposed(dg_n), operand(ws_.rows_h.middleRows(r0, count)), sum);
      }
    }
  }

  // A whole-row cell's rows [p0, p0 + count) of grad_ih and grad_hh (packed order, the cell's biases and
  // own parameters summed by the cell), straight into PyTorch's row order.
  void row_products(Index p0, Index count) {
    const ConstMatrixMap<T> x_all(a_.x, rows_, w_.input_size);
    const ConstMatrixMap<T> h_prev_all(a_.recurrent_mask ? ws_.rows_masked.data() : tape_.h_prev.data(), rows_,
                                       w_.output_size);
    auto grad_ih = ws_.grad_ih.block(p0, 0, count, w_.input_size);
    auto grad_hh = ws_.grad_hh.middleRows(p0, count);
    for (Index r0 = 0; r0 < rows_ && !team_.stopping(); r0 += kGradientRows) {
      const Index n = std::min(kGradientRows, rows_ - r0);
      const Accumulate sum = r0 == 0 ? Accumulate::kNo : Accumulate::kYes;
      matmul(target(grad_ih), transposed(ws_.dg_in.block(r0, p0, n, count)), operand(x_all.middleRows(r0, n)), sum);
      matmul(target(grad_hh), transposed(dg_hid_.block(r0, p0, n, count)), operand(h_prev_all.middleRows(r0, n)),
             sum);
    }
    const LayerGrads<T>& g = a_.grads;
    for (Index p = p0; p < p0 + count; ++p) {
      const Index dst = w_.perm[static_cast<std::size_t>(p)];
      std::copy(ws_.grad_ih.row(p).data(), ws_.grad_ih.row(p).data() + w_.input_size, g.w_ih + dst * w_.input_size);
      std::copy(ws_.grad_hh.row(p).data(), ws_.grad_hh.row(p).data() + w_.output_size, g.w_hh + dst * w_.output_size);
    }
  }

  // Slice k's rows back to PyTorch's row order, with the bias gradients. Those are column sums, taken row
  // after row (the rows are contiguous) into an Eigen-owned row, so the summation order, and the last
  // bit, never depends on where a buffer sits.
  void unpack_slice(long k) {
    const Index u0 = w_.unit_begin[k], Hs = w_.unit_begin[k + 1] - u0, col0 = G * u0, width = G * Hs;
    const LayerGrads<T>& g = a_.grads;
    RowVector<T> sum_in = RowVector<T>::Zero(width), sum_hid = RowVector<T>::Zero(width);
    for (Index r = 0; r < rows_; ++r) sum_in += ws_.dg_in.row(r).segment(col0, width);
    if (Cell::kSeparateHiddenGrad && !has_second_product<Cell>())
      for (Index r = 0; r < rows_; ++r) sum_hid += dg_hid_.row(r).segment(col0, width);
    else  // reset-before: b_hn sits outside r ⊙ (...), so every b_hh block sees the input side's gradient
      sum_hid = sum_in;
    for (Index p = col0; p < col0 + width; ++p) {
      const Index dst = w_.perm[static_cast<std::size_t>(p)];
      std::copy(ws_.grad_ih.row(p).data(), ws_.grad_ih.row(p).data() + w_.input_size, g.w_ih + dst * w_.input_size);
      std::copy(ws_.grad_hh.row(p).data(), ws_.grad_hh.row(p).data() + w_.output_size, g.w_hh + dst * w_.output_size);
      if (g.b_ih) g.b_ih[dst] = sum_in[p - col0];
      if (g.b_hh) g.b_hh[dst] = sum_hid[p - col0];
    }
    const Index V = w_.peephole_vectors;
    if (g.peephole)  // slice k's V vectors at V*u0 -> [V, H]
      for (Index j = 0; j < V; ++j)
        for (Index u = 0; u < Hs; ++u) g.peephole[j * H_ + u0 + u] = ws_.peephole_grad(0, V * u0 + j * Hs + u);
  }

  const Team& team_;
  const LayerWeights<T>& w_;
  const LayerGradCall<T>& a_;
  const LayerTape<T>& tape_;
  LayerWorkspace<T>& ws_;
  const long k0_, k1_;
  const Index H_, GH_, rows_;
  const bool project_;
  const ScratchMatrix<T>& dg_hid_;
};

}  // namespace fusedrnn
