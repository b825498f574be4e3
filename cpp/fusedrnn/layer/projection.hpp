// The input projection x · W_ihᵀ + bias_x, for all steps at once or for one slice's columns over a block
// of steps. The panel kernels' results do not depend on the blocking, so either way every element is the
// same.
#pragma once

#include <algorithm>

#include "fusedrnn/layer/plan.hpp"
#include "fusedrnn/layer_types.hpp"
#include "fusedrnn/matmul.hpp"
#include "fusedrnn/panels.hpp"
#include "fusedrnn/threads.hpp"

namespace fusedrnn {

// xg[rows, GH] = x[rows, I] · W_ihᵀ + bias_x, this member's share. Cut in columns too (a batch-1 call has
// few rows), in the order of the slices, so that each member produces the columns its slices read.
template <typename T, typename S>
void project_input(const Team& team, const LayerWeights<T, S>& w, Index rows, const T* x, T* xg) {
  const Index I = w.input_size, GH = w.gates * w.hidden_size;
  if (!has_panel_kernels<S>()) {
    for_my_chunks(team, rows, kRowChunk, [&](Index r0, Index count) {
      auto block = MatrixMap<T>(xg, rows, GH).middleRows(r0, count);
      matmul(target(block), operand(ConstMatrixMap<T>(x, rows, I).middleRows(r0, count)), transposed(w.w_ih));
      block.rowwise() += w.bias_x;
    });
    return;
  }
  const Index row_chunks = (rows + kRowChunk - 1) / kRowChunk;
  const Index col_chunks = (GH + kProjectionColumns - 1) / kProjectionColumns;
  long t0, t1;
  team.share(row_chunks * col_chunks, 1, t0, t1);
  for (long task = t0; task < t1 && !team.stopping(); ++task) {
    const Index r0 = (task / col_chunks) * kRowChunk, c0 = (task % col_chunks) * kProjectionColumns;
    panel_product(x + r0 * I, std::min(kRowChunk, rows - r0), I, I, w.panels.ih_from(c0, I),
                  std::min(kProjectionColumns, GH - c0), w.bias_x.data() + c0, xg + r0 * GH + c0, GH);
  }
}

// out[count, width] (row stride GH) = xs[count, I] · (W_ih's packed rows [col0, col0 + width))ᵀ + bias_x.
template <typename T, typename S>
void project_columns(const LayerWeights<T, S>& w, const T* xs, Index count, Index col0, Index width, T* out,
                     bool backwards) {
  const Index I = w.input_size, GH = w.gates * w.hidden_size;
  if (panel_product(xs, count, I, I, w.panels.ih_from(col0, I), width, w.bias_x.data() + col0, out, GH, backwards)) return;
  StridedMatrixMap<T> block_out(out, count, width, Eigen::OuterStride<>(GH));
  matmul(target(block_out), operand(ConstMatrixMap<T>(xs, count, I)), transposed(w.w_ih.middleRows(col0, width)));
  block_out.rowwise() += w.bias_x.segment(col0, width);
}

}  // namespace fusedrnn
