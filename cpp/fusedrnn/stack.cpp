#include "fusedrnn/stack.hpp"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "fusedrnn/cells/registry.hpp"
#include "fusedrnn/layer.hpp"
#include "fusedrnn/panels.hpp"
#include "fusedrnn/tuning.hpp"

namespace fusedrnn {

// The hidden-unit slices of a layer (see LayerWeights): one per 64 units, at most one per hardware
// thread (and 8), or as many as Tuning::slices asks (at most one per 16 units, and 8); boundaries on
// multiples of 16 units so threads never share a cache line. One slice for a cell whose step needs the
// whole row (StepPhases::kWholeRow).
static std::vector<Index> unit_slices(Index H, StepPhases phases) {
  if (phases == StepPhases::kWholeRow) return {0, H};
  const Index hw = std::max<Index>(1, static_cast<Index>(std::thread::hardware_concurrency()));
  const Index forced = current_tuning().slices;
  const Index K = forced > 0 ? std::max<Index>(1, std::min<Index>({forced, H / 16, 8}))
                             : std::max<Index>(1, std::min<Index>({H / 64, hw, 8}));
  std::vector<Index> begin{0};
  for (Index k = 1; k < K; ++k) {
    const Index b = (k * H / K) / 16 * 16;
    if (b > begin.back()) begin.push_back(b);
  }
  begin.push_back(H);
  return begin;
}

// How many parameters of its own a whole-row cell keeps per layer-direction (0 for the other cells).
static Index row_parameters(const StackConfig& config, Index H) {
  return with_cell<float>(config, [&](auto cell) -> Index {
    using Cell = decltype(cell);
    if constexpr (Cell::kPhases == StepPhases::kWholeRow) return Cell::row_parameters(H);
    return 0;
  });
}

template <typename T>
Stack<T>::Stack(const StackConfig& config) : config_(config) {
  config_.validate();
  const CellInfo cell = config_.info();
  const Index G = cell.gates, H = config_.hidden_size, H_out = config_.output_size();
  auto weights = std::make_shared<WeightSet<T>>(static_cast<std::size_t>(config_.num_layers * config_.directions()));
  for (Index layer = 0; layer < config_.num_layers; ++layer)
    for (Index direction = 0; direction < config_.directions(); ++direction) {
      LayerWeights<T>& w = (*weights)[static_cast<std::size_t>(layer * config_.directions() + direction)];
      w.input_size = config_.layer_input_size(layer);
      w.hidden_size = H;
      w.output_size = H_out;
      w.proj_size = config_.proj_size;
      w.gates = G;
      w.unit_begin = unit_slices(H, cell.phases);
      for (std::size_t k = 0; k + 1 < w.unit_begin.size(); ++k)
        for (Index gate = 0; gate < G; ++gate)
          for (Index u = w.unit_begin[k]; u < w.unit_begin[k + 1]; ++u) w.perm.push_back(gate * H + u);
      w.w_ih.setZero(G * H, w.input_size);
      w.w_hh_t.setZero(H_out, G * H);
      w.bias_x.setZero(G * H);
      w.bias_h.setZero(G * H);
      if (config_.proj_size > 0) w.w_hr_t.setZero(H, config_.proj_size);
      w.options.peephole = config_.peephole;
      w.options.input_forget = config_.input_forget;
      w.options.clip = static_cast<T>(config_.clip);
      w.options.hard_gates = config_.hard_gates;
      w.peephole_vectors = config_.peephole ? cell.peephole_vectors : 0;
      w.peep.setZero(w.peephole_vectors * H);
      w.row_params.setZero(row_parameters(config_, H));
    }
  weights_ = std::move(weights);
}

template <typename T>
std::vector<std::vector<Index>> Stack<T>::param_shapes() const {
  std::vector<std::vector<Index>> shapes;
  const std::vector<ParamRole> roles = config_.param_roles();
  for (Index layer = 0; layer < config_.num_layers; ++layer)
    for (Index direction = 0; direction < config_.directions(); ++direction)
      for (ParamRole role : roles) shapes.push_back(config_.param_shape(role, layer));
  return shapes;
}

template <typename T>
void Stack<T>::set_weights(const std::vector<const T*>& params) {
  const Index per_slot = config_.params_per_layer_direction();
  // Build the new set beside the current one, then swap: calls in flight keep the old set. Only the
  // layout is taken from the current set; every array is written anew.
  const std::shared_ptr<const WeightSet<T>> current = weights();
  auto next = std::make_shared<WeightSet<T>>(current->size());
  if (static_cast<Index>(params.size()) != per_slot * static_cast<Index>(next->size()))
    throw std::invalid_argument("params: expected " + std::to_string(per_slot * next->size()) +
                                " arrays, got " + std::to_string(params.size()));
  for (std::size_t slot = 0; slot < next->size(); ++slot) {
    const LayerWeights<T>& old = (*current)[slot];
    LayerWeights<T>& w = (*next)[slot];
    w.input_size = old.input_size;
    w.hidden_size = old.hidden_size;
    w.output_size = old.output_size;
    w.proj_size = old.proj_size;
    w.gates = old.gates;
    w.unit_begin = old.unit_begin;
    w.perm = old.perm;
    w.options = old.options;
    w.peephole_vectors = old.peephole_vectors;
    const ParamArrays<const T*> p = config_.param_arrays(params.data() + slot * per_slot);
    const Index GH = old.w_ih.rows(), H = w.hidden_size, H_out = w.output_size;
    w.w_ih.resize(GH, w.input_size);
    w.w_hh_t.resize(H_out, GH);
    w.bias_x.resize(GH);
    w.bias_h.resize(GH);
    w.w_hr_t.resize(old.w_hr_t.rows(), old.w_hr_t.cols());
    w.peep.resize(old.peep.size());
    w.row_params.resize(old.row_params.size());
    const ConstMatrixMap<T> w_ih(p.w_ih, GH, w.input_size), w_hh(p.w_hh, GH, H_out);
    RowVector<T> b_ih = RowVector<T>::Zero(GH), b_hh = RowVector<T>::Zero(GH), bias_x, bias_h;
    if (p.b_ih) {
      b_ih = ConstMatrixMap<T>(p.b_ih, 1, GH);
      b_hh = ConstMatrixMap<T>(p.b_hh, 1, GH);
    }
    with_cell<T>(config_, [&](auto cell) { decltype(cell)::split_bias(b_ih, b_hh, H, bias_x, bias_h); });
    // Into packed order: packed position q holds PyTorch row perm[q].
    for (Index q = 0; q < GH; ++q) {
      const Index src = w.perm[static_cast<std::size_t>(q)];
      w.w_ih.row(q) = w_ih.row(src);
      w.bias_x[q] = bias_x[src];
      w.bias_h[q] = bias_h[src];
    }
    // w_hh_t[:, q] = w_hh[perm[q], :], in 16x16 blocks (a column at a time would touch a cache line
    // per element).
    for (Index q0 = 0; q0 < GH; q0 += 16)
      for (Index r0 = 0; r0 < H_out; r0 += 16)
        for (Index q = q0; q < std::min(GH, q0 + 16); ++q) {
          const T* src = w_hh.row(w.perm[static_cast<std::size_t>(q)]).data();
          for (Index r = r0; r < std::min(H_out, r0 + 16); ++r) w.w_hh_t(r, q) = src[r];
        }
    if (p.w_hr) w.w_hr_t = ConstMatrixMap<T>(p.w_hr, config_.proj_size, H).transpose();
    if (p.peephole) {  // [V, H] -> slice k's V blocks at V*u0
      const Index V = w.peephole_vectors;
      for (Index k = 0; k < w.slices(); ++k) {
        const Index u0 = w.unit_begin[k], Hs = w.unit_begin[k + 1] - u0;
        for (Index j = 0; j < V; ++j)
          for (Index u = 0; u < Hs; ++u) w.peep[V * u0 + j * Hs + u] = p.peephole[j * H + u0 + u];
      }
    }
    with_cell<T>(config_, [&](auto cell) {
      using Cell = decltype(cell);
      if constexpr (Cell::kPhases == StepPhases::kWholeRow) Cell::pack_row_parameters(p, H, w.row_params.data());
    });
    pack_weights(w);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  weights_ = std::move(next);
}

template <typename T>
void Stack<T>::forward(const ForwardArgs<T>& args) const {
  const auto weights = this->weights();
  with_cell<T>(config_, [&](auto cell) { StackRunner<decltype(cell), T>::forward(config_, *weights, args, nullptr); });
}

template <typename T>
std::shared_ptr<StackWorkspace<T>> Stack<T>::new_workspace() const {
  return std::make_shared<StackWorkspace<T>>();
}

template <typename T>
void Stack<T>::forward_train(const ForwardArgs<T>& args, StackTape<T>& tape) const {
  tape.weights = weights();
  with_cell<T>(config_, [&](auto cell) { StackRunner<decltype(cell), T>::forward(config_, *tape.weights, args, &tape); });
}

template <typename T>
void Stack<T>::backward(const StackTape<T>& tape, const BackwardArgs<T>& args) const {
  with_cell<T>(config_, [&](auto cell) { StackRunner<decltype(cell), T>::backward(config_, tape, args); });
}

template class Stack<float>;
template class Stack<double>;

}  // namespace fusedrnn
