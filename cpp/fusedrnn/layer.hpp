// One direction of one layer over time, generic over the cell, run by a team of threads.
//
// Forward: the input projection of all T steps is one product before the time loop (its rows
// shared by the team). Each step, every member computes the recurrent product for the hidden-unit
// slices it owns (its columns of the packed W_hhᵀ, which stay in its cache for all T steps) and the
// cell's fused pass for those units, then the team meets at one spin barrier. Projection (LSTM) and
// the reset-before GRU add a second phase, and a barrier, per step. At large batch the members split
// the sequences instead (see split_rows): each takes its own through every step, with no barrier.
// Backward through time: per step the cells' gate-gradient pass on each member's slices, a barrier,
// then each member's columns of dh = dg · W_hh. The gradients of the input, the input weights and the
// recurrent weights are big products over all T*N rows after the loop.
//
// Variable lengths (PyTorch's packed-sequence semantics without packing): at time t a sequence n is
// active while t < lengths[n]. Inactive sequences keep their state and output zeros, so the forward
// direction stops at each sequence's last step and the reverse direction starts there.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "fusedrnn/panels.hpp"
#include "fusedrnn/layer_types.hpp"
#include "fusedrnn/threads.hpp"
#include "fusedrnn/tuning.hpp"

namespace fusedrnn {

// Buffers of one layer-direction call, shared by its team; sized once by resize() before the team
// starts, and reused across layers.
template <typename T>
struct LayerWorkspace {
  ScratchMatrix<T> xg;      // [T*N, G*H] input projection (packed order); [N, G*H] when per step
  ScratchMatrix<T> hg;      // [N, G*H] recurrent product of the step
  ScratchMatrix<T> gates;   // [N, S*H] gate values when not training
  ScratchMatrix<T> h_alt;   // [N, H_out] the second buffer of the double-buffered h (or dh in backward)
  ScratchMatrix<T> m;       // [N, H] LSTM: o ⊙ tanh(c) before projection (backward: its gradient); GRU: r ⊙ h
  // backward only
  ScratchMatrix<T> dg_in;   // [T*N, G*H] gradient wrt the input projection
  ScratchMatrix<T> dg_hid;  // [T*N, G*H] gradient wrt the recurrent product
  ScratchMatrix<T> dh_out;  // [T*N, P] gradient wrt the projected output
  ScratchMatrix<T> drh;     // [N, H] GRU reset-before: gradient wrt r ⊙ h
  ScratchMatrix<T> direct;  // [N, H] GRU: gradient wrt h entering the step not through W_hh
  ScratchMatrix<T> rows_h;  // [T*N, H] LSTM projection: o ⊙ tanh(c'); GRU reset-before: r ⊙ h_prev
  ScratchMatrix<T> grad_ih; // [G*H, I] packed-order weight gradients before unpacking
  ScratchMatrix<T> grad_hh; // [G*H, H_out]
  ScratchMatrix<T> peephole_grad;  // [1, 3*H] LSTM peepholes, packed order
  // Forward: whether the call's first step sweeps the weights backwards (steps alternate, and so do a
  // stream's one-step calls).
  bool backwards_first = false;
  // Forward: how many steps of the input projection are computed at a time (see projection_block).
  // Decided once per call in resize_forward, because the switch behind it may change while the call runs.
  Index projection_steps = 0;
};

// The workspaces of one stack call: one per direction (shared by the layers in turn) and, for inference,
// the outputs of the inner layers (ping-ponged). A call makes its own; a stream keeps one from step to
// step, so that a step allocates nothing.
template <typename T>
struct StackWorkspace {
  std::vector<LayerWorkspace<T>> directions;
  Buffer<T> between[2];
  unsigned calls = 0;
};

// Calls f(begin, size) for this member's share of fixed-size chunks of [0, count). The chunks depend
// only on count and chunk, so each product is computed the same way (same blocking, same sums) with
// any team size: results are bit-identical at any thread count.
template <typename F>
void for_my_chunks(const Team& team, Index count, Index chunk, F&& f) {
  long c0, c1;
  team.share((count + chunk - 1) / chunk, 1, c0, c1);
  for (long c = c0; c < c1 && !team.stopping(); ++c) f(c * chunk, std::min(chunk, count - c * chunk));
}


constexpr Index kRowChunk = 256;     // rows of the big products over all steps
constexpr Index kColumnChunk = 64;   // columns of the per-step products split across a team
constexpr Index kProjectionColumns = 16 * kPanelWidth;  // columns of the input projection's tasks
constexpr std::size_t kProjectionBytes = std::size_t{8} << 20;  // the input projection's buffer, at most
constexpr Index kGradientRows = 16384;  // rows of the weight gradients' sums per product (about 30 ms)

template <typename Cell, typename T>
struct Layer {
  static constexpr Index G = Cell::kGates;

  static void resize_forward(LayerWorkspace<T>& ws, const LayerWeights<T>& w, Index steps, Index batch, bool training,
                             const Tuning& tuning) {
    const Index H = w.hidden_size, S = Cell::saved_gates(w);
    ws.projection_steps = projection_block(w, steps, batch, tuning.projection_per_step);
    ws.xg.resize((ws.projection_steps > 0 ? ws.projection_steps : steps) * batch, G * H);
    ws.hg.resize(batch, G * H);
    if (!training) ws.gates.resize(batch, S * H);
    ws.h_alt.resize(batch, w.output_size);
    ws.m.setZero(batch, H);
  }

  // max_input: the largest layer input size of the stack (the workspace serves every layer).
  static void resize_backward(LayerWorkspace<T>& ws, const LayerWeights<T>& w, Index steps, Index batch,
                              Index max_input) {
    const Index H = w.hidden_size, rows = steps * batch;
    ws.dg_in.resize(rows, G * H);
    ws.dg_hid.resize(Cell::kSeparateHiddenGrad ? rows : 0, G * H);
    ws.dh_out.resize(w.proj_size > 0 ? rows : 0, w.proj_size);
    ws.h_alt.resize(batch, w.output_size);
    ws.m.setZero(batch, H);
    ws.drh.setZero(Cell::kTwoPhase ? batch : 0, H);
    ws.direct.setZero(Cell::kDirectHiddenGrad ? batch : 0, H);
    ws.rows_h.resize(w.proj_size > 0 || Cell::kTwoPhase ? rows : 0, H);
    ws.grad_ih.resize(G * H, max_input);
    ws.grad_hh.resize(G * H, w.output_size);
    ws.peephole_grad.setZero(1, w.peephole ? 3 * H : 0);
  }

  // How the input projection x·W_ihᵀ is computed: 0, for all steps before the time loop (one big
  // product); B > 0, B steps at a time, each slice's columns by whoever runs the slice at the first
  // step of the block, just before it reads them. The projection of all steps outgrows the caches at
  // large batch (one step at a time is then faster: writing it out and reading it back costs more
  // than one big product saves), and at small batch it would hold G*H values per row of x, several
  // times the output: blocks of kProjectionBytes keep the big products and bound the memory. The panel
  // kernels sum every element the same way either way. per_step_forced (Tuning::projection_per_step): one
  // step at a time, as a stream's one-step call, so that a long call times the arithmetic of such a step
  // without its per-call work.
  static Index projection_block(const LayerWeights<T>& w, Index steps, Index batch, bool per_step_forced) {
    const std::size_t row_bytes = static_cast<std::size_t>(batch * G * w.hidden_size) * sizeof(T);
    if (has_panel_kernels<T>() && (per_step_forced || steps == 1)) return 1;
    if (static_cast<std::size_t>(steps) * row_bytes <= kProjectionBytes) return 0;
    if (has_panel_kernels<T>() && batch >= 16) return 1;
    return std::max<Index>(1, static_cast<Index>(kProjectionBytes / row_bytes));
  }

  // Whether the members split the batch instead of the hidden units: each runs its own sequences through
  // every step with all the weights, and the team meets only around the products over all steps. Only
  // where a row's values need nothing from other rows within a step (no projection, no reset-before GRU,
  // no peephole sums over rows) and the panel kernels give every element the same bits for any number
  // of rows.
  static bool split_rows(const Team& team, const LayerWeights<T>& w) {
    return team.split_rows && has_panel_kernels<T>() && !Cell::kTwoPhase && w.proj_size == 0 && !w.peephole;
  }

  // xg[rows, G*H] = x[rows, I] · W_ihᵀ + bias_x, this member's share. The panel kernels' results do not
  // depend on the blocking, so the work is cut in columns too (a batch-1 call has few rows), in the
  // order of the slices, so that each member produces the columns its slices read.
  static void project_input(const Team& team, const LayerWeights<T>& w, Index rows, const T* x, T* xg) {
    const Index I = w.input_size, GH = G * w.hidden_size;
    if (!has_panel_kernels<T>()) {
      for_my_chunks(team, rows, kRowChunk, [&](Index r0, Index count) {
        auto block = MatrixMap<T>(xg, rows, GH).middleRows(r0, count);
        block.noalias() = ConstMatrixMap<T>(x, rows, I).middleRows(r0, count) * w.w_ih.transpose();
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
      panel_product(x + r0 * I, std::min(kRowChunk, rows - r0), I, I, w.ih_panels.data() + c0 * I,
                    std::min(kProjectionColumns, GH - c0), w.bias_x.data() + c0, xg + r0 * GH + c0, GH);
    }
  }

  // Called by every member of the team with the same arguments.
  // x: [T, N, I] layer input; lengths: [N] or nullptr; h: [N, H_out], c: [N, H] initial state in,
  // final state out; y: [T, N, *] this direction's H_out output columns, row stride y_stride;
  // tape: filled when kTraining.
  template <bool kTraining>
  static void forward(const Team& team, const LayerWeights<T>& w, Index steps, Index batch, bool reverse, const T* x,
                      const std::int64_t* lengths, T* h, T* c, T* y, Index y_stride, LayerTape<T>* tape,
                      LayerWorkspace<T>& ws) {
    const Index H = w.hidden_size, H_out = w.output_size, GH = G * H, S = Cell::saved_gates(w), SH = S * H;
    const Index rows = steps * batch;
    const bool project = w.proj_size > 0;

    const Index block = ws.projection_steps;  // 0: all steps, projected before the loop
    const bool by_rows = split_rows(team, w);
    if (block == 0) {
      project_input(team, w, rows, x, ws.xg.data());
      team.sync();
    }
    // The steps of the current block are [t_lo, t_lo + block_len) in time; xg holds them in time order.
    Index t_lo = 0, block_len = steps;
    auto xg_row = [&](Index t, Index n) { return ws.xg.data() + ((t - t_lo) * batch + n) * GH; };

    long k0 = 0, k1 = w.slices(), q0 = 0, q1 = H_out, n0 = 0, n1 = batch;
    if (by_rows) {
      team.share(batch, 1, n0, n1);  // my sequences, every slice and column
    } else {
      team.share(w.slices(), 1, k0, k1);     // my hidden-unit slices
      team.share(H_out, kColumnChunk, q0, q1);  // my columns of h (copies, projection)
    }
    const Index my_rows = n1 - n0;
    // One phase per step: the members claim slices (see StepClaims) rather than meet at a barrier, so a
    // late member's slices are taken over by the others.
    const bool claiming = team.claims && team.size > 1 && !by_rows && !Cell::kTwoPhase && !project;
    std::vector<std::uint8_t> active(lengths ? batch : 0);
    T* h_cur = h;
    T* h_next = ws.h_alt.data();
    CellRow<T> row;
    row.w = &w;
    for (Index s = 0; s < steps; ++s) {
      if (team.leaving(s)) break;
      const Index t = reverse ? steps - 1 - s : s;
      if (lengths)
        for (Index n = 0; n < batch; ++n) active[n] = t < lengths[n];
      auto is_active = [&](Index n) { return !lengths || active[n]; };
      const Index trow = t * batch;
      const bool block_start = block > 0 && s % block == 0;
      if (block_start) {
        block_len = std::min(block, steps - s);
        t_lo = reverse ? steps - s - block_len : s;
      }
      // Claiming: each slice is taken by whoever claims it first, so the slice copies to the tape go
      // with the slice; otherwise each member copies its columns.
      if (kTraining && !claiming) {
        for (Index n = n0; n < n1; ++n) {
          std::copy(h_cur + n * H_out + q0, h_cur + n * H_out + q1, tape->h_prev.data() + (trow + n) * H_out + q0);
          if (Cell::kHasCellState)
            for (long k = k0; k < k1; ++k)
              std::copy(c + n * H + w.unit_begin[k], c + n * H + w.unit_begin[k + 1],
                        tape->c_prev.data() + (trow + n) * H + w.unit_begin[k]);
        }
      }
      const ConstMatrixMap<T> h_mat(h_cur, batch, H_out);
      // Every other step reads the weights in the opposite order (slices, products and panels), so
      // that it starts on what the step before left in the cache.
      const bool backwards = ws.backwards_first != (s % 2 == 1);
      auto run_slice = [&](long k) {
        const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0, col0 = G * u0;
        const Index product_cols = Cell::kTwoPhase ? 2 * Hs : G * Hs;
        if (kTraining && claiming)
          for (Index n = n0; n < n1; ++n) {
            std::copy_n(h_cur + n * H + u0, Hs, tape->h_prev.data() + (trow + n) * H + u0);
            if (Cell::kHasCellState) std::copy_n(c + n * H + u0, Hs, tape->c_prev.data() + (trow + n) * H + u0);
          }
        // This slice's columns of the block's projection, for my rows (contiguous over the block's
        // steps when they are all the rows).
        auto project_slice = [&] {
          const Index I = w.input_size, width = G * Hs;
          const bool whole_steps = my_rows == batch;
          for (Index tb = t_lo; tb < t_lo + block_len; tb += whole_steps ? block_len : 1) {
            const Index count = whole_steps ? block_len * batch : my_rows;
            const T* xs = x + (tb * batch + n0) * I;
            T* out = xg_row(tb, n0) + col0;
            if (!panel_product(xs, count, I, I, w.ih_panels.empty() ? nullptr : w.ih_panels.data() + col0 * I, width,
                               w.bias_x.data() + col0, out, GH, backwards)) {
              StridedMatrixMap<T> block_out(out, count, width, Eigen::OuterStride<>(GH));
              block_out.noalias() = ConstMatrixMap<T>(xs, count, I) * w.w_ih.middleRows(col0, width).transpose();
              block_out.rowwise() += w.bias_x.segment(col0, width);
            }
          }
        };
        if (block_start && !backwards) project_slice();
        if (!panel_product(h_cur + n0 * H_out, my_rows, H_out, H_out, w.hh_slice_panels(k),
                           product_cols, nullptr, ws.hg.data() + n0 * GH + col0, GH, backwards))
          ws.hg.block(n0, col0, my_rows, product_cols).noalias() =
              h_mat.middleRows(n0, my_rows) * w.w_hh_t.middleCols(col0, product_cols);
        if (block_start && backwards) project_slice();
        for (Index n = n0; n < n1; ++n) {
          T* gates = kTraining ? tape->gates.data() + (trow + n) * SH + S * u0 : ws.gates.data() + n * SH + S * u0;
          T* y_row = y + (trow + n) * y_stride;
          if (!is_active(n)) {
            if (kTraining) std::fill(gates, gates + S * Hs, T(0));
            if (!project) {
              std::copy(h_cur + n * H + u0, h_cur + n * H + u0 + Hs, h_next + n * H + u0);
              std::fill(y_row + u0, y_row + u0 + Hs, T(0));
            }
            continue;
          }
          row.units = Hs;
          row.xg = xg_row(t, n) + col0;
          row.hg = ws.hg.data() + n * GH + col0;
          row.bias_h = w.bias_h.data() + col0;
          row.h_prev = h_cur + n * H_out + u0;
          row.c = Cell::kHasCellState ? c + n * H + u0 : nullptr;
          row.gates = gates;
          row.h = project ? ws.m.data() + n * H + u0 : h_next + n * H_out + u0;
          row.rh = ws.m.data() + n * H + u0;
          row.peephole = w.peephole ? w.peep.data() + 3 * u0 : nullptr;
          if constexpr (Cell::kTwoPhase) {
            Cell::forward_row_first(row);
          } else {
            Cell::forward_row(row);
            if (!project) std::copy(row.h, row.h + Hs, y_row + u0);
          }
        }
      };
      if (claiming) {
        // My slices first, then any that another member has not claimed yet, each list in the sweep's order.
        const long K = w.slices(), mine = k1 - k0, others = K - mine;
        const bool others_first = team.claim_others_first;
        for (long i = 0; i < K; ++i) {
          const long j = others_first ? (i + mine) % K : i;
          long k;
          if (j < mine)
            k = backwards ? k1 - 1 - j : k0 + j;
          else
            k = (k1 + (backwards ? others - 1 - (j - mine) : j - mine)) % K;
          if (team.claims->claim(static_cast<int>(k), s)) {
            run_slice(k);
            team.claims->finish();
          }
        }
        team.claims->wait_step(s);
        std::swap(h_cur, h_next);
        continue;
      }
      for (long j = 0; j < k1 - k0; ++j) run_slice(backwards ? k1 - 1 - j : k0 + j);
      if (by_rows) {
        std::swap(h_cur, h_next);
        continue;
      }
      if constexpr (Cell::kTwoPhase) {
        team.sync();  // every unit's r ⊙ h is in ws.m
        for (long k = k0; k < k1; ++k) {
          const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0, col0 = G * u0;
          // The n gate's panels start at panel 2*Hs/16 of the slice when Hs fills whole panels.
          const T* n_panels = w.hh_slice_panels(k);
          if (n_panels) n_panels += (2 * Hs / kPanelWidth) * H * kPanelWidth;
          if (Hs % kPanelWidth != 0 || !panel_product(ws.m.data(), batch, H, H, n_panels, Hs, nullptr,
                                                      ws.hg.data() + col0 + 2 * Hs, GH))
            ws.hg.middleCols(col0 + 2 * Hs, Hs).noalias() = ws.m * w.w_hh_t.middleCols(col0 + 2 * Hs, Hs);
          for (Index n = 0; n < batch; ++n) {
            if (!is_active(n)) continue;
            row.units = Hs;
            row.xg = xg_row(t, n) + col0;
            row.hg = ws.hg.data() + n * GH + col0;
            row.bias_h = w.bias_h.data() + col0;
            row.h_prev = h_cur + n * H + u0;
            row.gates = kTraining ? tape->gates.data() + (trow + n) * SH + S * u0 : ws.gates.data() + n * SH + S * u0;
            row.h = h_next + n * H + u0;
            Cell::forward_row(row);
            std::copy(row.h, row.h + Hs, y + (trow + n) * y_stride + u0);
          }
        }
      }
      if (project) {
        team.sync();  // every unit's o ⊙ tanh(c) is in ws.m
        MatrixMap<T> h_next_mat(h_next, batch, H_out);
        for_my_chunks(team, H_out, kColumnChunk, [&](Index c0, Index width) {
          h_next_mat.middleCols(c0, width).noalias() = ws.m * w.w_hr_t.middleCols(c0, width);
        });
        if (q1 > q0) {
          for (Index n = 0; n < batch; ++n) {
            T* y_row = y + (trow + n) * y_stride;
            if (is_active(n)) {
              std::copy(h_next + n * H_out + q0, h_next + n * H_out + q1, y_row + q0);
            } else {
              std::copy(h_cur + n * H_out + q0, h_cur + n * H_out + q1, h_next + n * H_out + q0);
              std::fill(y_row + q0, y_row + q1, T(0));
            }
          }
        }
      }
      team.sync();
      std::swap(h_cur, h_next);
    }
    if (h_cur != h)
      for (Index n = n0; n < n1; ++n) std::copy(h_cur + n * H_out + q0, h_cur + n * H_out + q1, h + n * H_out + q0);
    team.sync();
  }

  // Called by every member of the team with the same arguments.
  // x: [T, N, I] the layer input forward saw; dy: [T, N, *] gradient of this direction's output
  // columns, row stride dy_stride; dh: [N, H_out], dc: [N, H] gradient wrt the final state in, wrt
  // the initial state out; dx: [T, N, I] out; g: parameter gradients out (overwritten).
  static void backward(const Team& team, const LayerWeights<T>& w, Index steps, Index batch, bool reverse,
                       const T* x, const std::int64_t* lengths, const LayerTape<T>& tape, const T* dy,
                       Index dy_stride, T* dh, T* dc, T* dx, const LayerGrads<T>& g, LayerWorkspace<T>& ws) {
    const Index H = w.hidden_size, H_out = w.output_size, P = w.proj_size, GH = G * H;
    const Index S = Cell::saved_gates(w), SH = S * H, rows = steps * batch;
    const bool project = P > 0;
    T* const dg_hid_base = Cell::kSeparateHiddenGrad ? ws.dg_hid.data() : ws.dg_in.data();

    const bool by_rows = split_rows(team, w);
    long k0 = 0, k1 = w.slices(), q0 = 0, q1 = H_out, n0 = 0, n1 = batch;
    if (by_rows) {
      team.share(batch, 1, n0, n1);
    } else {
      team.share(w.slices(), 1, k0, k1);
      team.share(H_out, kColumnChunk, q0, q1);
    }
    if (w.peephole)  // the workspace serves every layer: start this one's sums from zero
      for (long k = k0; k < k1; ++k)
        std::fill(ws.peephole_grad.data() + 3 * w.unit_begin[k], ws.peephole_grad.data() + 3 * w.unit_begin[k + 1], T(0));
    std::vector<std::uint8_t> active(lengths ? batch : 0);
    T* dh_cur = dh;
    T* dh_next = ws.h_alt.data();
    CellGradRow<T> row;
    row.w = &w;
    auto fill_row = [&](Index trow, Index n, Index u0, Index Hs) {
      const Index col0 = G * u0;
      row.units = Hs;
      row.gates = tape.gates.data() + (trow + n) * SH + S * u0;
      row.c_prev = Cell::kHasCellState ? tape.c_prev.data() + (trow + n) * H + u0 : nullptr;
      row.h_prev = tape.h_prev.data() + (trow + n) * H_out + u0;
      row.dh = ws.m.data() + n * H + u0;
      row.drh = Cell::kTwoPhase ? ws.drh.data() + n * H + u0 : nullptr;
      row.dc = Cell::kHasCellState ? dc + n * H + u0 : nullptr;
      row.dg_in = ws.dg_in.data() + (trow + n) * GH + col0;
      row.dg_hid = dg_hid_base + (trow + n) * GH + col0;
      row.dh_direct = Cell::kDirectHiddenGrad ? ws.direct.data() + n * H + u0 : nullptr;
      row.peephole = w.peephole ? w.peep.data() + 3 * u0 : nullptr;
      row.peephole_grad = w.peephole ? ws.peephole_grad.data() + 3 * u0 : nullptr;
    };
    for (Index s = steps - 1; s >= 0; --s) {
      if (team.leaving(steps - 1 - s)) break;
      const Index t = reverse ? steps - 1 - s : s;
      if (lengths)
        for (Index n = 0; n < batch; ++n) active[n] = t < lengths[n];
      auto is_active = [&](Index n) { return !lengths || active[n]; };
      const Index trow = t * batch;
      const T* dy_t = dy + trow * dy_stride;
      // ws.m: the gradient wrt each unit's new h (LSTM with projection: wrt o ⊙ tanh(c')).
      if (project) {
        T* dh_out = ws.dh_out.data() + trow * P;
        for (Index n = 0; n < batch; ++n)
          for (long q = q0; q < q1; ++q)
            dh_out[n * P + q] = is_active(n) ? dh_cur[n * P + q] + dy_t[n * dy_stride + q] : T(0);
        team.sync();
        for (long k = k0; k < k1; ++k) {
          const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0;
          ws.m.middleCols(u0, Hs).noalias() =
              ConstMatrixMap<T>(dh_out, batch, P) * w.w_hr_t.middleRows(u0, Hs).transpose();
        }
      }
      for (long k = k0; k < k1; ++k) {
        const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0, col0 = G * u0;
        for (Index n = n0; n < n1; ++n) {
          if (!is_active(n)) {
            std::fill_n(ws.dg_in.data() + (trow + n) * GH + col0, G * Hs, T(0));
            if (Cell::kSeparateHiddenGrad) std::fill_n(dg_hid_base + (trow + n) * GH + col0, G * Hs, T(0));
            continue;
          }
          if (!project)
            Vec<T>(ws.m.data() + n * H + u0, Hs) =
                ConstVec<T>(dh_cur + n * H + u0, Hs) + ConstVec<T>(dy_t + n * dy_stride + u0, Hs);
          fill_row(trow, n, u0, Hs);
          if constexpr (Cell::kTwoPhase)
            Cell::backward_row_first(row);
          else
            Cell::backward_row(row);
        }
      }
      if constexpr (Cell::kTwoPhase) {
        team.sync();  // every unit's dn is in dg_in
        // d(r ⊙ h)[:, q] = Σ_k dn_k · U_n,k[:, q], U_n,k = (columns n of slice k of w_hh_t)ᵀ
        const ConstMatrixMap<T> dg_t(ws.dg_in.data() + trow * GH, batch, GH);
        for_my_chunks(team, H, kColumnChunk, [&](Index c0, Index width) {
          auto drh = ws.drh.middleCols(c0, width);
          drh.setZero();
          for (Index k = 0; k < w.slices(); ++k) {
            const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0, ncol = G * u0 + 2 * Hs;
            drh.noalias() += dg_t.middleCols(ncol, Hs) * w.w_hh_t.block(c0, ncol, width, Hs).transpose();
          }
        });
        team.sync();
        for (long k = k0; k < k1; ++k) {
          const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0;
          for (Index n = 0; n < batch; ++n) {
            if (!is_active(n)) continue;
            fill_row(trow, n, u0, Hs);
            Cell::backward_row_second(row);
          }
        }
      }
      // dh entering the step, rows [n0, n1) and columns [c0, c0 + width).
      auto hidden_grad = [&](Index c0, Index width) {
        const Index count = n1 - n0;
        const T* dg_t = dg_hid_base + (trow + n0) * GH;
        auto block = MatrixMap<T>(dh_next, batch, H_out).block(n0, c0, count, width);
        const T* panels = w.hh_t_panels.empty() ? nullptr : w.hh_t_panels.data() + (c0 / kPanelWidth) * GH * kPanelWidth;
        if (!panel_product(dg_t, count, GH, GH, panels, width, nullptr, dh_next + n0 * H_out + c0, H_out))
          block.noalias() = ConstMatrixMap<T>(dg_t, count, GH) * w.w_hh_t.middleRows(c0, width).transpose();
        if (Cell::kDirectHiddenGrad) block += ws.direct.block(n0, c0, count, width);
        for (Index n = n0; n < n1; ++n)
          if (!is_active(n))
            std::copy(dh_cur + n * H_out + c0, dh_cur + n * H_out + c0 + width, dh_next + n * H_out + c0);
      };
      if (by_rows) {
        hidden_grad(0, H_out);
      } else {
        team.sync();  // the whole step's dg is known
        for_my_chunks(team, H_out, kColumnChunk, hidden_grad);
        team.sync();
      }
      std::swap(dh_cur, dh_next);
    }
    if (dh_cur != dh)
      for (Index n = n0; n < n1; ++n) std::copy(dh_cur + n * H_out + q0, dh_cur + n * H_out + q1, dh + n * H_out + q0);
    if (by_rows) {
      team.sync();  // every row's dg is known
      team.share(w.slices(), 1, k0, k1);  // the weight gradients are shared by slices
    }

    // The big products over all steps.
    long r0, r1;
    team.share(rows, 4, r0, r1);
    const ConstMatrixMap<T> x_all(x, rows, w.input_size);
    const ConstMatrixMap<T> h_prev_all(tape.h_prev.data(), rows, H_out);
    for_my_chunks(team, rows, kRowChunk, [&](Index c0, Index count) {
      MatrixMap<T>(dx, rows, w.input_size).middleRows(c0, count).noalias() = ws.dg_in.middleRows(c0, count) * w.w_ih;
    });
    if (r1 > r0) {
      // Per-row inputs of the weight gradients that mix units of several slices.
      for (long r = r0; r < r1 && (project || Cell::kTwoPhase); ++r) {
        const T* gates = tape.gates.data() + r * SH;
        for (Index k = 0; k < w.slices(); ++k) {
          const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0;
          const T* gk = gates + S * u0;
          auto out = ws.rows_h.row(r).segment(u0, Hs).array().transpose();
          if (project) {  // o ⊙ tanh(f ⊙ c_prev + i ⊙ g)
            ConstVec<T> i(gk, Hs), f(gk + Hs, Hs), gg(gk + 2 * Hs, Hs), o(gk + 3 * Hs, Hs);
            out = o * (f * ConstVec<T>(tape.c_prev.data() + r * H + u0, Hs) + i * gg).tanh();
          } else if (Cell::kTwoPhase) {  // r ⊙ h_prev
            out = ConstVec<T>(gk, Hs) * ConstVec<T>(tape.h_prev.data() + r * H + u0, Hs);
          }
        }
      }
    }
    team.sync();
    if (project)
      for_my_chunks(team, P, kColumnChunk, [&](Index p0, Index count) {
        MatrixMap<T>(g.w_hr, P, H).middleRows(p0, count).noalias() =
            ws.dh_out.middleCols(p0, count).transpose() * ws.rows_h;
      });
    const ScratchMatrix<T>& dg_hid = Cell::kSeparateHiddenGrad ? ws.dg_hid : ws.dg_in;
    for (long k = k0; k < k1 && !team.stopping(); ++k) {
      const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0, col0 = G * u0, width = G * Hs;
      auto grad_ih = ws.grad_ih.block(0, 0, GH, w.input_size).middleRows(col0, width);
      // Reset-before GRU: the candidate's rows of grad_hh come from r ⊙ h_prev instead.
      const Index hidden_width = Cell::kTwoPhase ? 2 * Hs : width;
      auto grad_hh = ws.grad_hh.middleRows(col0, hidden_width);
      auto grad_hn = ws.grad_hh.middleRows(col0 + 2 * Hs, Cell::kTwoPhase ? Hs : 0);
      // Sums over all rows, taken kGradientRows at a time so that a stop is seen within a chunk.
      for (Index r0 = 0; r0 < rows && !team.stopping(); r0 += kGradientRows) {
        const Index count = std::min(kGradientRows, rows - r0);
        auto dg_ih = ws.dg_in.block(r0, col0, count, width);
        auto dg_hh = dg_hid.block(r0, col0, count, hidden_width);
        if (r0 == 0) {
          grad_ih.noalias() = dg_ih.transpose() * x_all.middleRows(r0, count);
          grad_hh.noalias() = dg_hh.transpose() * h_prev_all.middleRows(r0, count);
        } else {
          grad_ih.noalias() += dg_ih.transpose() * x_all.middleRows(r0, count);
          grad_hh.noalias() += dg_hh.transpose() * h_prev_all.middleRows(r0, count);
        }
        if constexpr (Cell::kTwoPhase) {
          auto dg_n = ws.dg_in.block(r0, col0 + 2 * Hs, count, Hs);
          if (r0 == 0)
            grad_hn.noalias() = dg_n.transpose() * ws.rows_h.middleRows(r0, count);
          else
            grad_hn.noalias() += dg_n.transpose() * ws.rows_h.middleRows(r0, count);
        }
      }
      // Back to PyTorch's row order. The bias gradients are column sums, taken row after row (the
      // rows are contiguous) into an Eigen-owned row, so the summation order, and the last bit,
      // never depends on where a buffer sits.
      RowVector<T> sum_in = RowVector<T>::Zero(width), sum_hid = RowVector<T>::Zero(width);
      for (Index r = 0; r < rows; ++r) sum_in += ws.dg_in.row(r).segment(col0, width);
      if (Cell::kSeparateHiddenGrad && !Cell::kTwoPhase)
        for (Index r = 0; r < rows; ++r) sum_hid += dg_hid.row(r).segment(col0, width);
      else  // reset-before: b_hn sits outside r ⊙ (...), so every b_hh block sees the input side's gradient
        sum_hid = sum_in;
      for (Index p = col0; p < col0 + width; ++p) {
        const Index dst = w.perm[static_cast<std::size_t>(p)];
        std::copy(ws.grad_ih.row(p).data(), ws.grad_ih.row(p).data() + w.input_size, g.w_ih + dst * w.input_size);
        std::copy(ws.grad_hh.row(p).data(), ws.grad_hh.row(p).data() + H_out, g.w_hh + dst * H_out);
        if (g.b_ih) g.b_ih[dst] = sum_in[p - col0];
        if (g.b_hh) g.b_hh[dst] = sum_hid[p - col0];
      }
      if (g.peephole)  // slice k's p_i, p_f, p_o at 3*u0 -> PyTorch-style [p_i; p_f; p_o]
        for (Index j = 0; j < 3; ++j)
          for (Index u = 0; u < Hs; ++u) g.peephole[j * H + u0 + u] = ws.peephole_grad(0, 3 * u0 + j * Hs + u);
    }
    team.sync();
  }
};

}  // namespace fusedrnn
