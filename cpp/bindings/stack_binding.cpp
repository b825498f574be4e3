// The compiled stack, one Python class per scalar type from one template (PyStack<T>), and the
// configuration object it is built from. Arrays are converted and checked here once; no numerics.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "arrays.hpp"
#include "bindings.hpp"
#include "fusedrnn/config.hpp"
#include "fusedrnn/stack.hpp"
#include "gil.hpp"

namespace fusedrnn_py {

namespace {

using fusedrnn::StackConfig;

std::vector<Index> state_shape(const StackConfig& cfg, Index batch, Index width) {
  return {cfg.num_layers * cfg.directions(), batch, width};
}

// The LSTM's cell-state argument: an optional array of this shape; for other cells, None only.
template <typename T>
std::optional<Array<T>> optional_cell_state(const StackConfig& cfg, const py::object& obj, const std::string& name,
                                            const std::vector<Index>& shape) {
  if (cfg.has_cell_state()) return optional_array<T>(obj, name, shape);
  if (!obj.is_none()) throw py::value_error(name + ": expected None for a cell without a cell state");
  return std::nullopt;
}

std::optional<Array<std::int64_t>> checked_lengths(const py::object& obj, Index steps, Index batch) {
  if (obj.is_none()) return std::nullopt;
  auto lengths = Array<std::int64_t>::ensure(obj);
  if (!lengths || lengths.ndim() != 1 || lengths.shape(0) != batch)
    throw py::value_error("lengths: expected " + std::to_string(batch) + " integers");
  for (Index n = 0; n < batch; ++n) {
    const auto len = lengths.data()[n];
    if (len < 1 || len > steps)
      throw py::value_error("lengths: expected values in [1, " + std::to_string(steps) + "], got " +
                            std::to_string(len) + " at index " + std::to_string(n));
  }
  return lengths;
}

template <typename T>
class PyStack final : public StackBinding {
 public:
  explicit PyStack(const StackConfig& config) : core_(std::make_shared<fusedrnn::Stack<T>>(config)) {}

  const StackConfig& config() const { return core_->config(); }
  std::vector<std::vector<Index>> param_shapes() const { return core_->param_shapes(); }
  // The hidden-unit slices of the first layer's weights (for tests of the schedules).
  Index slices() const { return (*core_->weights())[0].slices(); }

  void set_weights(const py::sequence& params) {
    const auto shapes = core_->param_shapes();
    if (params.size() != shapes.size())
      throw py::value_error("params: expected " + std::to_string(shapes.size()) + " arrays, got " +
                            std::to_string(params.size()));
    std::vector<Array<T>> arrays;
    std::vector<const T*> pointers;
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      arrays.push_back(checked_array<T>(params[k], "params[" + std::to_string(k) + "]", shapes[k]));
      pointers.push_back(arrays.back().data());
    }
    without_gil([&] { core_->set_weights(pointers); });
  }

  py::tuple forward(const py::object& x, const py::object& h0, const py::object& c0, const py::object& lengths) {
    return run_forward(x, h0, c0, lengths, TrainingMasks{}, false);
  }
  py::tuple forward_train(const py::object& x, const py::object& h0, const py::object& c0,
                          const py::object& lengths, const py::object& masks, const py::object& recurrent_masks,
                          const py::object& zoneout_masks) {
    return run_forward(x, h0, c0, lengths, TrainingMasks{masks, recurrent_masks, zoneout_masks}, true);
  }
  py::tuple backward(const TapeHandle& saved, const py::object& grad_y, const py::object& grad_h_n,
                     const py::object& grad_c_n);

  bool takes_as_is(const py::object& x, const std::vector<Index>& shape) const override {
    if (!py::array_t<T, py::array::c_style>::check_(x)) return false;
    const auto a = py::reinterpret_borrow<py::array>(x);
    if (a.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
    for (std::size_t k = 0; k < shape.size(); ++k)
      if (a.shape(static_cast<py::ssize_t>(k)) != shape[k]) return false;
    return true;
  }
  WorkspaceHandle new_workspace() const override {
    WorkspaceHandle handle;
    handle.owner = core_;
    handle.workspace = core_->new_workspace();
    return handle;
  }
  py::array step(const py::object& x, const py::object& h, const py::object& c, WorkspaceHandle* workspace) override;

 private:
  // forward_train's masks (stack.hpp), each None or a sequence of arrays.
  struct TrainingMasks {
    py::object dropout = py::none();
    py::object recurrent = py::none();
    py::object zoneout = py::none();
  };
  py::tuple run_forward(const py::object& x, const py::object& h0, const py::object& c0, const py::object& lengths,
                        const TrainingMasks& masks, bool training);
  std::vector<Array<T>> checked_masks(const py::object& masks, Index steps, Index batch) const;
  // A list of `count` arrays of one shape, named `name` in errors; none when masks is None.
  std::vector<Array<T>> checked_mask_list(const py::object& masks, const char* name, Index count,
                                          const std::vector<Index>& shape) const;

  std::shared_ptr<fusedrnn::Stack<T>> core_;
};

template <typename T>
std::vector<Array<T>> PyStack<T>::checked_masks(const py::object& masks_obj, Index steps, Index batch) const {
  const auto& cfg = config();
  std::vector<Array<T>> masks;
  if (masks_obj.is_none()) return masks;
  const auto seq = py::reinterpret_borrow<py::sequence>(masks_obj);
  if (static_cast<Index>(seq.size()) != cfg.num_layers - 1)
    throw py::value_error("dropout_masks: expected " + std::to_string(cfg.num_layers - 1) + " arrays, got " +
                          std::to_string(seq.size()));
  for (std::size_t k = 0; k < seq.size(); ++k)
    masks.push_back(checked_array<T>(seq[k], "dropout_masks[" + std::to_string(k) + "]",
                                     {steps, batch, cfg.directions() * cfg.output_size()}));
  return masks;
}

template <typename T>
std::vector<Array<T>> PyStack<T>::checked_mask_list(const py::object& masks_obj, const char* name, Index count,
                                                    const std::vector<Index>& shape) const {
  std::vector<Array<T>> masks;
  if (masks_obj.is_none()) return masks;
  if (!py::isinstance<py::sequence>(masks_obj))
    throw py::type_error(std::string(name) + ": expected a list of arrays, got " + type_name(masks_obj));
  const auto seq = py::reinterpret_borrow<py::sequence>(masks_obj);
  if (static_cast<Index>(seq.size()) != count)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(count) + " arrays, got " +
                          std::to_string(seq.size()));
  for (std::size_t k = 0; k < seq.size(); ++k)
    masks.push_back(checked_array<T>(seq[k], std::string(name) + "[" + std::to_string(k) + "]", shape));
  return masks;
}

template <typename T>
py::tuple PyStack<T>::run_forward(const py::object& x_obj, const py::object& h0_obj, const py::object& c0_obj,
                                  const py::object& lengths_obj, const TrainingMasks& training_masks,
                                  bool training) {
  const auto& cfg = config();
  if (!py::isinstance<py::array>(x_obj)) throw py::type_error("x: expected a numpy array");
  const auto x_nd = py::reinterpret_borrow<py::array>(x_obj);
  if (x_nd.ndim() != 3)
    throw py::value_error("x: expected 3 dimensions (T, N, input_size), got " + std::to_string(x_nd.ndim()));
  const Index steps = x_nd.shape(0), batch = x_nd.shape(1);
  if (steps < 1 || batch < 1)
    throw py::value_error("x: expected at least one step and one sequence, got shape " +
                          shape_str({steps, batch, static_cast<Index>(x_nd.shape(2))}));
  const Index H = cfg.hidden_size, H_out = cfg.output_size(), D = cfg.directions();
  Array<T> x = checked_array<T>(x_obj, "x", {steps, batch, cfg.input_size});
  auto h0 = optional_array<T>(h0_obj, "h0", state_shape(cfg, batch, H_out));
  const auto c0 = optional_cell_state<T>(cfg, c0_obj, "c0", state_shape(cfg, batch, H));
  const auto lengths = checked_lengths(lengths_obj, steps, batch);
  const std::vector<Array<T>> masks =
      training ? checked_masks(training_masks.dropout, steps, batch) : std::vector<Array<T>>{};
  const Index slots = cfg.num_layers * D;
  const std::vector<Array<T>> recurrent_masks =
      checked_mask_list(training_masks.recurrent, "recurrent_masks", slots, {batch, H_out});
  const std::vector<Array<T>> zoneout_masks = checked_mask_list(
      training_masks.zoneout, "zoneout_masks", slots, {steps, batch, (cfg.has_cell_state() ? 2 : 1) * H});
  if (training && cfg.zoneout > 0 && zoneout_masks.empty())
    throw py::value_error("zoneout_masks: expected " + std::to_string(slots) + " arrays for a stack with zoneout " +
                          std::to_string(cfg.zoneout) + ", got None");
  if (!zoneout_masks.empty() && cfg.zoneout == 0)
    throw py::value_error("zoneout_masks: expected None for a stack without zoneout");

  Array<T> y({steps, batch, D * H_out});
  Array<T> h_n(state_shape(cfg, batch, H_out));
  std::optional<Array<T>> c_n;
  if (cfg.has_cell_state()) c_n = Array<T>(state_shape(cfg, batch, H));
  fusedrnn::ForwardArgs<T> args;
  for (const auto& mask : masks) args.dropout_masks.push_back(mask.data());
  for (const auto& mask : recurrent_masks) args.recurrent_masks.push_back(mask.data());
  for (const auto& mask : zoneout_masks) args.zoneout_masks.push_back(mask.data());
  args.steps = steps;
  args.batch = batch;
  args.x = x.data();
  args.h0 = data_or_null(h0);
  args.c0 = data_or_null(c0);
  args.lengths = data_or_null(lengths);
  args.y = y.mutable_data();
  args.h_n = h_n.mutable_data();
  args.c_n = mutable_data_or_null(c_n);

  py::object c_out = array_or_none(c_n);
  SignalPoll signals;
  args.stop = signals.request();
  if (!training) {
    signals.run([&] { core_->forward(args); });
    return py::make_tuple(y, h_n, c_out);
  }
  auto tape = std::make_shared<fusedrnn::StackTape<T>>();
  signals.run([&] { core_->forward_train(args, *tape); });
  TapeHandle handle{core_, steps, batch, tape};
  return py::make_tuple(y, h_n, c_out, py::cast(std::move(handle)));
}

template <typename T>
py::tuple PyStack<T>::backward(const TapeHandle& saved, const py::object& grad_y_obj, const py::object& grad_h_n_obj,
                               const py::object& grad_c_n_obj) {
  if (saved.owner != core_) throw py::value_error("saved: expected a tape recorded by this stack");
  const auto& tape = *std::static_pointer_cast<fusedrnn::StackTape<T>>(saved.tape);
  const auto& cfg = config();
  const Index steps = tape.steps, batch = tape.batch;
  const Index H = cfg.hidden_size, H_out = cfg.output_size(), D = cfg.directions();
  Array<T> grad_y = checked_array<T>(grad_y_obj, "grad_y", {steps, batch, D * H_out});
  auto grad_h_n = optional_array<T>(grad_h_n_obj, "grad_h_n", state_shape(cfg, batch, H_out));
  const auto grad_c_n = optional_cell_state<T>(cfg, grad_c_n_obj, "grad_c_n", state_shape(cfg, batch, H));

  Array<T> grad_x({steps, batch, cfg.input_size});
  Array<T> grad_h0(state_shape(cfg, batch, H_out));
  std::optional<Array<T>> grad_c0;
  if (cfg.has_cell_state()) grad_c0 = Array<T>(state_shape(cfg, batch, H));
  py::list grads;
  fusedrnn::BackwardArgs<T> args;
  for (const auto& shape : core_->param_shapes()) {
    Array<T> g(shape);
    args.grad_params.push_back(g.mutable_data());
    grads.append(g);
  }
  args.grad_y = grad_y.data();
  args.grad_h_n = data_or_null(grad_h_n);
  args.grad_c_n = data_or_null(grad_c_n);
  args.grad_x = grad_x.mutable_data();
  args.grad_h0 = grad_h0.mutable_data();
  args.grad_c0 = mutable_data_or_null(grad_c0);
  SignalPoll signals;
  args.stop = signals.request();
  signals.run([&] { core_->backward(tape, args); });
  return py::make_tuple(grad_x, grad_h0, array_or_none(grad_c0), grads);
}

// x: (N, I), or (I,) for one unbatched sequence (N = 1); h (L*D, N, H_out) and c (L*D, N, H) are the
// state, updated in place. Returns y: (N, D*H_out), or (D*H_out,) for an unbatched x. A stream calls this
// once per time step: the checks read the array headers and compose a message only when they fail.
template <typename T>
py::array PyStack<T>::step(const py::object& x_obj, const py::object& h_obj, const py::object& c_obj,
                           WorkspaceHandle* workspace) {
  const auto& cfg = config();
  if (workspace && workspace->owner != core_)
    throw py::value_error("workspace: expected one made by this stack's new_workspace()");
  if (workspace && workspace->busy->exchange(true, std::memory_order_acquire)) workspace = nullptr;
  struct Release {
    WorkspaceHandle* held;
    ~Release() {
      if (held) held->busy->store(false, std::memory_order_release);
    }
  } release{workspace};
  if (!py::isinstance<py::array>(x_obj)) throw py::type_error("x: expected a numpy array, got " + type_name(x_obj));
  const auto x_nd = py::reinterpret_borrow<py::array>(x_obj);
  const bool unbatched = x_nd.ndim() == 1;
  if (!unbatched && (x_nd.ndim() != 2 || x_nd.shape(0) < 1))
    throw py::value_error("x: expected shape (N, input_size) with N >= 1, or (input_size,), got ndim " +
                          std::to_string(x_nd.ndim()));
  const Index batch = unbatched ? 1 : x_nd.shape(0), H_out = cfg.output_size();
  Array<T> x = unbatched ? checked_array<T>(x_obj, "x", {cfg.input_size}) : checked_array<T>(x_obj, "x", {batch, cfg.input_size});
  T* h = state_in_place<T>(h_obj, "h", state_shape(cfg, batch, H_out));
  T* c = nullptr;
  if (cfg.has_cell_state())
    c = state_in_place<T>(c_obj, "c", state_shape(cfg, batch, cfg.hidden_size));
  else if (!c_obj.is_none())
    throw py::value_error("c: expected None for a cell without a cell state");
  const Index width = cfg.directions() * H_out;
  Array<T> y = unbatched ? Array<T>(width) : Array<T>({batch, width});
  fusedrnn::ForwardArgs<T> args;
  args.steps = 1;
  args.batch = batch;
  args.x = x.data();
  args.h0 = h;
  args.c0 = c;
  args.y = y.mutable_data();
  args.h_n = h;
  args.c_n = c;
  args.workspace = workspace ? static_cast<fusedrnn::StackWorkspace<T>*>(workspace->workspace.get()) : nullptr;
  without_gil([&] { core_->forward(args); });
  return y;
}

}  // namespace

void register_config(py::module_& m) {
  py::class_<StackConfig>(m, "StackConfig", py::module_local(),
                          "What a compiled stack is, independent of its weights (fusedrnn._config.StackConfig).")
      .def(py::init([](const std::string& cell, Index input_size, Index hidden_size, Index num_layers, bool bias,
                       bool bidirectional, Index proj_size, bool linear_before_reset, bool residual, bool peephole,
                       double clip, bool input_forget, bool hard_gates, bool layer_norm, double zoneout) {
             StackConfig cfg;
             cfg.cell = fusedrnn::parse_cell_kind(cell);
             cfg.input_size = input_size;
             cfg.hidden_size = hidden_size;
             cfg.num_layers = num_layers;
             cfg.bias = bias;
             cfg.bidirectional = bidirectional;
             cfg.proj_size = proj_size;
             cfg.linear_before_reset = linear_before_reset;
             cfg.residual = residual;
             cfg.peephole = peephole;
             cfg.clip = clip;
             cfg.input_forget = input_forget;
             cfg.hard_gates = hard_gates;
             cfg.layer_norm = layer_norm;
             cfg.zoneout = zoneout;
             cfg.validate();
             return cfg;
           }),
           py::kw_only(), py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers") = 1,
           py::arg("bias") = true, py::arg("bidirectional") = false, py::arg("proj_size") = 0,
           py::arg("linear_before_reset") = true, py::arg("residual") = false, py::arg("peephole") = false,
           py::arg("clip") = 0.0, py::arg("input_forget") = false, py::arg("hard_gates") = false,
           py::arg("layer_norm") = false, py::arg("zoneout") = 0.0)
      .def_property_readonly("cell", [](const StackConfig& c) { return c.info().name; })
      .def_readonly("input_size", &StackConfig::input_size)
      .def_readonly("hidden_size", &StackConfig::hidden_size)
      .def_readonly("num_layers", &StackConfig::num_layers)
      .def_readonly("bias", &StackConfig::bias)
      .def_readonly("bidirectional", &StackConfig::bidirectional)
      .def_readonly("proj_size", &StackConfig::proj_size)
      .def_readonly("linear_before_reset", &StackConfig::linear_before_reset)
      .def_readonly("residual", &StackConfig::residual)
      .def_readonly("peephole", &StackConfig::peephole)
      .def_readonly("clip", &StackConfig::clip)
      .def_readonly("input_forget", &StackConfig::input_forget)
      .def_readonly("hard_gates", &StackConfig::hard_gates)
      .def_readonly("layer_norm", &StackConfig::layer_norm)
      .def_readonly("zoneout", &StackConfig::zoneout);
}

void register_handles(py::module_& m) {
  py::class_<TapeHandle>(m, "Saved", py::module_local(), "What a training forward keeps for backward (opaque).")
      .def_readonly("steps", &TapeHandle::steps)
      .def_readonly("batch", &TapeHandle::batch);
  py::class_<WorkspaceHandle>(m, "Workspace", py::module_local(),
                              "Workspaces a stream keeps from step to step (opaque).");
  py::class_<StackBinding>(m, "StackBase", py::module_local(), "What the stacks of every dtype have in common.");
}

template <typename T>
void register_stack(py::module_& m, const char* name) {
  using Stack = PyStack<T>;
  py::class_<Stack, StackBinding>(m, name, py::module_local(),
                                  "A stack of recurrent layers (time-major arrays; see fusedrnn._config).")
      .def(py::init<const StackConfig&>(), py::arg("config"))
      .def_property_readonly("config", &Stack::config)
      .def_property_readonly("dtype", [](const Stack&) { return py::dtype::of<T>(); })
      .def("param_shapes", &Stack::param_shapes)
      .def("_slices", &Stack::slices)
      .def("set_weights", &Stack::set_weights, py::arg("params"))
      .def("forward", &Stack::forward, py::arg("x"), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
           py::arg("lengths") = py::none())
      .def("forward_train", &Stack::forward_train, py::arg("x"), py::arg("h0") = py::none(),
           py::arg("c0") = py::none(), py::arg("lengths") = py::none(), py::arg("dropout_masks") = py::none(),
           py::arg("recurrent_masks") = py::none(), py::arg("zoneout_masks") = py::none())
      .def("new_workspace", &Stack::new_workspace,
           "Workspaces for step() to keep from step to step (for one thread at a time).")
      .def("step", &Stack::step, py::arg("x"), py::arg("h"), py::arg("c") = py::none(),
           py::arg("workspace") = py::none(),
           "One time step of x (N, I), or (I,) unbatched; the state h (L*D, N, H_out), c (L*D, N, H) is "
           "updated in place. Returns y (N, D*H_out), or (D*H_out,).")
      .def("backward", &Stack::backward, py::arg("saved"), py::arg("grad_y"), py::arg("grad_h_n") = py::none(),
           py::arg("grad_c_n") = py::none());
}

template void register_stack<float>(py::module_&, const char*);
template void register_stack<double>(py::module_&, const char*);

}  // namespace fusedrnn_py
