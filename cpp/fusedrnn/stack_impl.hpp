// The stack driver, generic over the cell: layers in order, both directions of a layer at once
// (when threads allow), dropout between layers when training.
// Included only by the per-cell translation units (stack_rnn.cpp, stack_lstm.cpp, stack_gru.cpp).
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "fusedrnn/layer.hpp"
#include "fusedrnn/stack.hpp"
#include "fusedrnn/threads.hpp"

namespace fusedrnn {

namespace detail {

// Copies one layer-direction's slice of a [D*L, N, X] state array, or zeros when src is null.
template <typename T>
void init_state(const T* src, Index slot, Index batch, Index width, T* dst) {
  const Index count = batch * width;
  if (src)
    std::copy(src + slot * count, src + (slot + 1) * count, dst + slot * count);
  else
    std::fill(dst + slot * count, dst + (slot + 1) * count, T(0));
}

}  // namespace detail

template <typename Cell, typename T>
void StackRunner<Cell, T>::forward(const StackConfig& cfg, const WeightSet<T>& weights, const ForwardArgs<T>& a,
                                   StackTape<T>* tape) {
  const Index L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size, H_out = cfg.output_size();
  const Index steps = a.steps, batch = a.batch, rows = steps * batch, width = D * H_out;
  const bool training = tape != nullptr;
  ScopedFlushDenormals flush;

  if (training) {
    tape->steps = steps;
    tape->batch = batch;
    if (a.lengths) tape->lengths.assign(a.lengths, a.lengths + batch);
    tape->layer_inputs.assign(static_cast<std::size_t>(L), {});
    tape->dropout_masks.assign(a.dropout_masks.empty() ? 0 : static_cast<std::size_t>(L - 1), {});
    tape->layers.assign(static_cast<std::size_t>(L * D), {});
    tape->layer_inputs[0].assign(a.x, a.x + rows * cfg.input_size);
  }

  // Between layers: inference ping-pongs two buffers; training keeps each layer's input in the tape.
  std::vector<T> buffers[2];
  const T* input = training ? tape->layer_inputs[0].data() : a.x;
  for (Index layer = 0; layer < L; ++layer) {
    const bool last = layer == L - 1;
    T* out;
    if (last) {
      out = a.y;
    } else if (training) {
      tape->layer_inputs[static_cast<std::size_t>(layer + 1)].resize(static_cast<std::size_t>(rows * width));
      out = tape->layer_inputs[static_cast<std::size_t>(layer + 1)].data();
    } else {
      buffers[layer % 2].resize(static_cast<std::size_t>(rows * width));
      out = buffers[layer % 2].data();
    }
    auto run_direction = [&, layer, input, out](Index direction) {
      const Index slot = layer * D + direction;
      detail::init_state(a.h0, slot, batch, H_out, a.h_n);
      T* c = nullptr;
      if (Cell::kHasCellState) {
        detail::init_state(a.c0, slot, batch, H, a.c_n);
        c = a.c_n + slot * batch * H;
      }
      T* h = a.h_n + slot * batch * H_out;
      T* y = out + direction * H_out;
      const LayerWeights<T>& w = weights[static_cast<std::size_t>(slot)];
      if (training)
        Layer<Cell, T>::template forward<true>(w, steps, batch, direction == 1, input, a.lengths, h, c, y, width,
                                               &tape->layers[static_cast<std::size_t>(slot)]);
      else
        Layer<Cell, T>::template forward<false>(w, steps, batch, direction == 1, input, a.lengths, h, c, y, width,
                                                nullptr);
    };
    if (D == 2)
      run_pair(true, [&] { run_direction(0); }, [&] { run_direction(1); });
    else
      run_direction(0);

    if (training && !last && !a.dropout_masks.empty()) {
      const T* mask = a.dropout_masks[static_cast<std::size_t>(layer)];
      auto& kept = tape->dropout_masks[static_cast<std::size_t>(layer)];
      kept.assign(mask, mask + rows * width);
      for (Index k = 0; k < rows * width; ++k) out[k] *= mask[k];
    }
    input = out;
  }
}

template <typename Cell, typename T>
void StackRunner<Cell, T>::backward(const StackConfig& cfg, const StackTape<T>& tape, const BackwardArgs<T>& a) {
  const WeightSet<T>& weights = *tape.weights;
  const Index L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size, H_out = cfg.output_size();
  const Index steps = tape.steps, batch = tape.batch, rows = steps * batch, width = D * H_out;
  const Index per_slot = cfg.params_per_layer_direction();
  const std::int64_t* lengths = tape.lengths.empty() ? nullptr : tape.lengths.data();
  ScopedFlushDenormals flush;

  std::vector<T> grad_out_below;  // [T, N, D*H_out] gradient wrt the output of the layer below
  const T* grad_out = a.grad_y;
  for (Index layer = L - 1; layer >= 0; --layer) {
    const Index in_size = cfg.layer_input_size(layer);
    // Each direction's gradient wrt the layer input goes to its own buffer; they are summed below.
    std::vector<T> dx_reverse(D == 2 ? static_cast<std::size_t>(rows * in_size) : 0);
    std::vector<T> dx_below(layer > 0 ? static_cast<std::size_t>(rows * in_size) : 0);
    T* dx_forward = layer > 0 ? dx_below.data() : a.grad_x;
    auto run_direction = [&, layer, grad_out](Index direction) {
      const Index slot = layer * D + direction;
      detail::init_state(a.grad_h_n, slot, batch, H_out, a.grad_h0);
      T* dc = nullptr;
      if (Cell::kHasCellState) {
        detail::init_state(a.grad_c_n, slot, batch, H, a.grad_c0);
        dc = a.grad_c0 + slot * batch * H;
      }
      T* const* p = a.grad_params.data() + slot * per_slot;
      LayerGrads<T> g;
      g.w_ih = p[0];
      g.w_hh = p[1];
      if (cfg.bias) {
        g.b_ih = p[2];
        g.b_hh = p[3];
      }
      if (cfg.proj_size > 0) g.w_hr = p[cfg.bias ? 4 : 2];
      Layer<Cell, T>::backward(weights[static_cast<std::size_t>(slot)], steps, batch, direction == 1,
                               tape.layer_inputs[static_cast<std::size_t>(layer)].data(), lengths,
                               tape.layers[static_cast<std::size_t>(slot)], grad_out + direction * H_out, width,
                               a.grad_h0 + slot * batch * H_out, dc, direction == 0 ? dx_forward : dx_reverse.data(),
                               g);
    };
    if (D == 2)
      run_pair(true, [&] { run_direction(0); }, [&] { run_direction(1); });
    else
      run_direction(0);

    const Index count = rows * in_size;
    if (D == 2)
      for (Index k = 0; k < count; ++k) dx_forward[k] += dx_reverse[static_cast<std::size_t>(k)];
    if (layer > 0) {
      if (!tape.dropout_masks.empty()) {
        const T* mask = tape.dropout_masks[static_cast<std::size_t>(layer - 1)].data();
        for (Index k = 0; k < count; ++k) dx_below[static_cast<std::size_t>(k)] *= mask[k];
      }
      grad_out_below = std::move(dx_below);
      grad_out = grad_out_below.data();
    }
  }
}

}  // namespace fusedrnn
