// A stack of recurrent layers: L layers x D directions, dropout between layers when training.
// It owns its weights, copied and laid out for the kernels by set_weights. Each call works on the
// immutable weight set current when it starts, and a tape keeps the set it was recorded with, so
// calls from several threads, and set_weights between record and backward, are safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "fusedrnn/config.hpp"
#include "fusedrnn/layer_types.hpp"

namespace fusedrnn {

class StopRequest;  // threads.hpp

// The weights of every layer-direction, index layer*D + direction.
template <typename T>
using WeightSet = std::vector<LayerWeights<T>>;

// What training forward keeps for backward.
template <typename T>
struct StackTape {
  std::shared_ptr<const WeightSet<T>> weights;  // the weights forward used
  Index steps = 0;                              // T
  Index batch = 0;                              // N
  std::vector<std::int64_t> lengths;            // [N], empty = every sequence has T steps
  std::vector<Buffer<T>> layer_inputs;          // [L] each [T, N, I_l]: the layer's input after dropout
  std::vector<Buffer<T>> dropout_masks;         // [L-1] each [T, N, D*H_out] (scaled), or none
  std::vector<LayerTape<T>> layers;             // [L*D], index layer*D + direction
};

// Training's per-layer-direction masks, each drawn once per record call by the caller:
// recurrent dropout's on h entering the recurrent product, [N, H_out], kept (scaled by 1 / (1 - p)) or
// zero, the same at every step; zoneout's, [T, N, Z*H] (Z = 2 with a cell state: each row's h factors,
// then its c factors), 1 where a unit takes its new value and 0 where it keeps its previous one.

template <typename T>
struct StackWorkspace;  // layer.hpp

template <typename T>
struct ForwardArgs {
  Index steps = 0;                     // T
  Index batch = 0;                     // N
  const T* x = nullptr;                // [T, N, I]
  const T* h0 = nullptr;               // [D*L, N, H_out] or nullptr (zeros)
  const T* c0 = nullptr;               // [D*L, N, H] or nullptr (zeros), LSTM only
  const std::int64_t* lengths = nullptr;           // [N], each in [1, T], or nullptr
  std::vector<const T*> dropout_masks;             // training: [L-1] each [T, N, D*H_out], or empty
  std::vector<const T*> recurrent_masks;           // training: [L*D] each [N, H_out], or empty
  std::vector<const T*> zoneout_masks;             // training with zoneout: [L*D] each [T, N, Z*H]
  T* y = nullptr;                      // [T, N, D*H_out] out
  T* h_n = nullptr;                    // [D*L, N, H_out] out
  T* c_n = nullptr;                    // [D*L, N, H] out, LSTM only
  StopRequest* stop = nullptr;         // or nullptr: the call runs to its end
  StackWorkspace<T>* workspace = nullptr;  // inference: workspaces kept across calls (Stack::new_workspace),
                                           // used by one call at a time; nullptr = the call's own
};

template <typename T>
struct BackwardArgs {
  const T* grad_y = nullptr;           // [T, N, D*H_out]
  const T* grad_h_n = nullptr;         // [D*L, N, H_out] or nullptr (zeros)
  const T* grad_c_n = nullptr;         // [D*L, N, H] or nullptr (zeros), LSTM only
  T* grad_x = nullptr;                 // [T, N, I] out
  T* grad_h0 = nullptr;                // [D*L, N, H_out] out
  T* grad_c0 = nullptr;                // [D*L, N, H] out, LSTM only
  std::vector<T*> grad_params;         // out, PyTorch's order and shapes (see Stack::param_shapes)
  StopRequest* stop = nullptr;         // or nullptr: the call runs to its end
};

template <typename T>
class Stack : public std::enable_shared_from_this<Stack<T>> {
 public:
  explicit Stack(const StackConfig& config);

  const StackConfig& config() const { return config_; }
  // Shapes of the parameters in PyTorch's order: per layer, per direction: w_ih, w_hh, [b_ih, b_hh], [w_hr].
  std::vector<std::vector<Index>> param_shapes() const;
  // params: one pointer per entry of param_shapes(), each a row-major array of that shape.
  void set_weights(const std::vector<const T*>& params);

  void forward(const ForwardArgs<T>& args) const;                     // inference
  // Workspaces for inference calls that a caller keeps from call to call (ForwardArgs::workspace).
  std::shared_ptr<StackWorkspace<T>> new_workspace() const;
  void forward_train(const ForwardArgs<T>& args, StackTape<T>& tape) const;
  void backward(const StackTape<T>& tape, const BackwardArgs<T>& args) const;

  // The current weights; they stay valid (and unchanged) for as long as the caller holds them.
  std::shared_ptr<const WeightSet<T>> weights() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return weights_;
  }

 private:
  StackConfig config_;
  std::shared_ptr<const WeightSet<T>> weights_;  // [L*D]
  mutable std::mutex mutex_;                     // guards the weights_ pointer only
};

// The cell-specific drivers; each cell's are compiled in their own translation unit.
template <typename Cell, typename T>
struct StackRunner {
  // tape: nullptr for inference.
  static void forward(const StackConfig& cfg, const WeightSet<T>& weights, const ForwardArgs<T>& args,
                      StackTape<T>* tape);
  static void backward(const StackConfig& cfg, const StackTape<T>& tape, const BackwardArgs<T>& args);
};

}  // namespace fusedrnn
