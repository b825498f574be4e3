// pybind11 bindings of the fusedrnn core: convert arrays, check shapes once, release the GIL for
// all compute. No numerics here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <cxxabi.h>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fusedrnn/buffer.hpp"
#include "fusedrnn/stack.hpp"
#include "fusedrnn/threads.hpp"
#include "fusedrnn/tuning.hpp"

namespace py = pybind11;
using fusedrnn::Index;

namespace {

template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string shape_str(const std::vector<Index>& shape) {
  std::ostringstream out;
  out << "(";
  for (std::size_t k = 0; k < shape.size(); ++k) out << (k ? ", " : "") << shape[k];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

template <typename T>
bool is_aligned(const T* p) { return reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0; }

// Converts obj to a C-contiguous, aligned array of T (copying only when needed) and checks its shape.
template <typename T>
Array<T> checked_array(const py::handle& obj, const std::string& name, const std::vector<Index>& shape) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(name + ": expected a numpy array, got " + std::string(py::str(obj.get_type())));
  Array<T> a = Array<T>::ensure(obj);
  if (!a) throw py::type_error(name + ": cannot convert to the model's dtype");
  std::vector<Index> actual(a.shape(), a.shape() + a.ndim());
  if (actual != shape) throw py::value_error(name + ": expected shape " + shape_str(shape) + ", got " + shape_str(actual));
  if (!is_aligned(a.data())) {  // C-contiguous but not on a multiple of sizeof(T) (a view into bytes, say)
    Array<T> aligned(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
    std::memcpy(aligned.mutable_data(), a.data(), static_cast<std::size_t>(a.nbytes()));
    return aligned;
  }
  return a;
}

// An optional array: None stays empty. (A default-constructed py::array_t is not "no array" but an
// empty one, hence std::optional.)
template <typename T>
std::optional<Array<T>> optional_array(const py::handle& obj, const std::string& name, const std::vector<Index>& shape) {
  if (obj.is_none()) return std::nullopt;
  return checked_array<T>(obj, name, shape);
}

// Work without the GIL. A thread (a daemon thread, say) that comes back from the kernels while the
// interpreter is finalizing must not take the GIL again: CPython ends such a thread with pthread_exit,
// whose unwinding cannot pass a destructor (pybind11's gil_scoped_release), and std::terminate aborts
// the process. Such a thread parks instead, as CPython 3.14 does with its own: the process is exiting.
[[noreturn]] void park_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

void retake_gil(PyThreadState* state) {
  if (interpreter_finalizing()) park_forever();
  try {
    PyEval_RestoreThread(state);
  } catch (abi::__forced_unwind&) {  // finalizing began in between: pthread_exit's unwinding
    park_forever();
  }
}

template <typename F>
void without_gil(F&& compute) {
  PyThreadState* state = PyEval_SaveThread();
  try {
    compute();
  } catch (...) {
    retake_gil(state);
    throw;
  }
  retake_gil(state);
}

// Ctrl-C during a long call. Python runs signal handlers only in the main thread, and only with the
// GIL: a call made from the main thread takes the GIL back every StopRequest::kPollInterval to let
// them run; a handler's exception (KeyboardInterrupt) stops the call and is raised from it. Calls
// from other threads run to their end.
unsigned long g_main_thread_ident = 0;

class SignalPoll {
 public:
  SignalPoll() : stop_([this] { return poll(); }) {}
  SignalPoll(const SignalPoll&) = delete;
  SignalPoll& operator=(const SignalPoll&) = delete;

  fusedrnn::StopRequest* request() { return PyThread_get_thread_ident() == g_main_thread_ident ? &stop_ : nullptr; }

  // Runs compute() without the GIL; raises the handler's exception if it stopped the call.
  template <typename F>
  void run(F&& compute) {
    try {
      without_gil(compute);
    } catch (const fusedrnn::Interrupted&) {
      if (error_) throw *error_;
      throw;
    }
  }

 private:
  bool poll() {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    error_.emplace();  // takes the pending exception
    return true;
  }
  fusedrnn::StopRequest stop_;
  std::optional<py::error_already_set> error_;
};

template <typename T>
const T* data_or_null(const std::optional<Array<T>>& a) { return a ? a->data() : nullptr; }

template <typename T>
T* mutable_data_or_null(std::optional<Array<T>>& a) { return a ? a->mutable_data() : nullptr; }

template <typename T>
py::object array_or_none(const std::optional<Array<T>>& a) { return a ? py::object(*a) : py::object(py::none()); }

struct TapeHandle;

// Workspaces a stream keeps from step to step (opaque to Python). One call uses them at a time: a call
// that finds them busy (a stream stepped from two threads at once) works on its own instead.
struct WorkspaceHandle {
  std::shared_ptr<const void> owner;  // the core stack they were made for
  std::shared_ptr<fusedrnn::StackWorkspace<float>> f32;
  std::shared_ptr<fusedrnn::StackWorkspace<double>> f64;
  std::shared_ptr<std::atomic<bool>> busy = std::make_shared<std::atomic<bool>>(false);
};

// One class for both dtypes: exactly one of f32 / f64 is set.
class PyStack {
 public:
  PyStack(const std::string& cell, Index input_size, Index hidden_size, Index num_layers, bool bias, bool bidirectional,
          Index proj_size, bool linear_before_reset, bool is_double, bool residual, bool peephole, double clip,
          bool input_forget, bool hard_gates) {
    cfg_.cell = fusedrnn::parse_cell_kind(cell);
    cfg_.input_size = input_size;
    cfg_.hidden_size = hidden_size;
    cfg_.num_layers = num_layers;
    cfg_.bias = bias;
    cfg_.bidirectional = bidirectional;
    cfg_.proj_size = proj_size;
    cfg_.linear_before_reset = linear_before_reset;
    cfg_.residual = residual;
    cfg_.peephole = peephole;
    cfg_.clip = clip;
    cfg_.input_forget = input_forget;
    cfg_.hard_gates = hard_gates;
    cfg_.validate();
    if (is_double)
      f64_ = std::make_shared<fusedrnn::Stack<double>>(cfg_);
    else
      f32_ = std::make_shared<fusedrnn::Stack<float>>(cfg_);
  }

  bool is_double() const { return f64_ != nullptr; }
  // The core stack, as tapes and workspaces record which stack made them.
  std::shared_ptr<const void> core() const {
    return f64_ ? std::static_pointer_cast<const void>(f64_) : std::static_pointer_cast<const void>(f32_);
  }
  const fusedrnn::StackConfig& config() const { return cfg_; }
  std::vector<std::vector<Index>> param_shapes() const { return f64_ ? f64_->param_shapes() : f32_->param_shapes(); }
  // The hidden-unit slices of the first layer's weights (for tests of the schedules).
  Index slices() const { return f64_ ? (*f64_->weights())[0].slices() : (*f32_->weights())[0].slices(); }

  void set_weights(const py::sequence& params) {
    if (f64_)
      set_weights_impl(*f64_, params);
    else
      set_weights_impl(*f32_, params);
  }

  py::tuple forward(const py::object& x, const py::object& h0, const py::object& c0, const py::object& lengths);
  py::tuple forward_train(const py::object& x, const py::object& h0, const py::object& c0, const py::object& lengths,
                          const py::object& masks);
  py::tuple backward(const TapeHandle& tape, const py::object& grad_y, const py::object& grad_h_n,
                     const py::object& grad_c_n);
  py::array step(const py::object& x, const py::object& h, const py::object& c, WorkspaceHandle* workspace);
  WorkspaceHandle new_workspace() const {
    WorkspaceHandle handle;
    handle.owner = core();
    if (f64_)
      handle.f64 = f64_->new_workspace();
    else
      handle.f32 = f32_->new_workspace();
    return handle;
  }

 private:
  template <typename T>
  py::array step_impl(const fusedrnn::Stack<T>& stack, const py::object& x, const py::object& h, const py::object& c,
                      fusedrnn::StackWorkspace<T>* workspace);

  template <typename T>
  void set_weights_impl(fusedrnn::Stack<T>& stack, const py::sequence& params) {
    const auto shapes = stack.param_shapes();
    if (params.size() != shapes.size())
      throw py::value_error("params: expected " + std::to_string(shapes.size()) + " arrays, got " +
                            std::to_string(params.size()));
    std::vector<Array<T>> arrays;
    std::vector<const T*> pointers;
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      arrays.push_back(checked_array<T>(params[k], "params[" + std::to_string(k) + "]", shapes[k]));
      pointers.push_back(arrays.back().data());
    }
    without_gil([&] { stack.set_weights(pointers); });
  }

  template <typename T>
  py::tuple forward_impl(const fusedrnn::Stack<T>& stack, const py::object& x, const py::object& h0, const py::object& c0,
                         const py::object& lengths, const py::object& masks, bool training);

  template <typename T>
  py::tuple backward_impl(const fusedrnn::Stack<T>& stack, const std::shared_ptr<fusedrnn::StackTape<T>>& tape,
                          const py::object& grad_y, const py::object& grad_h_n, const py::object& grad_c_n);

  fusedrnn::StackConfig cfg_;
  std::shared_ptr<fusedrnn::Stack<float>> f32_;
  std::shared_ptr<fusedrnn::Stack<double>> f64_;
};

// What record() keeps for backward, opaque to Python.
struct TapeHandle {
  std::shared_ptr<const void> owner;  // the core stack it was recorded on (kept alive by the tape)
  Index steps = 0, batch = 0;
  std::shared_ptr<fusedrnn::StackTape<float>> f32;
  std::shared_ptr<fusedrnn::StackTape<double>> f64;
};

std::vector<Index> state_shape(const fusedrnn::StackConfig& cfg, Index batch, Index width) {
  return {cfg.num_layers * cfg.directions(), batch, width};
}

template <typename T>
py::tuple PyStack::forward_impl(const fusedrnn::Stack<T>& stack, const py::object& x_obj, const py::object& h0_obj,
                                const py::object& c0_obj, const py::object& lengths_obj, const py::object& masks_obj,
                                bool training) {
  const auto& cfg = cfg_;
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
  std::optional<Array<T>> c0;
  if (cfg.has_cell_state())
    c0 = optional_array<T>(c0_obj, "c0", state_shape(cfg, batch, H));
  else if (!c0_obj.is_none())
    throw py::value_error("c0: expected None for a cell without a cell state");
  std::optional<Array<std::int64_t>> lengths;
  if (!lengths_obj.is_none()) {
    lengths = Array<std::int64_t>::ensure(lengths_obj);
    if (!*lengths || lengths->ndim() != 1 || lengths->shape(0) != batch)
      throw py::value_error("lengths: expected " + std::to_string(batch) + " integers");
    for (Index n = 0; n < batch; ++n) {
      const auto len = lengths->data()[n];
      if (len < 1 || len > steps)
        throw py::value_error("lengths: expected values in [1, " + std::to_string(steps) + "], got " +
                              std::to_string(len) + " at index " + std::to_string(n));
    }
  }
  std::vector<Array<T>> masks;
  fusedrnn::ForwardArgs<T> args;
  if (training && !masks_obj.is_none()) {
    const auto seq = py::reinterpret_borrow<py::sequence>(masks_obj);
    if (static_cast<Index>(seq.size()) != cfg.num_layers - 1)
      throw py::value_error("dropout_masks: expected " + std::to_string(cfg.num_layers - 1) + " arrays, got " +
                            std::to_string(seq.size()));
    for (std::size_t k = 0; k < seq.size(); ++k) {
      masks.push_back(checked_array<T>(seq[k], "dropout_masks[" + std::to_string(k) + "]", {steps, batch, D * H_out}));
      args.dropout_masks.push_back(masks.back().data());
    }
  }

  Array<T> y({steps, batch, D * H_out});
  Array<T> h_n(state_shape(cfg, batch, H_out));
  std::optional<Array<T>> c_n;
  if (cfg.has_cell_state()) c_n = Array<T>(state_shape(cfg, batch, H));
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
    signals.run([&] { stack.forward(args); });
    return py::make_tuple(y, h_n, c_out);
  }
  auto tape = std::make_shared<fusedrnn::StackTape<T>>();
  signals.run([&] { stack.forward_train(args, *tape); });
  TapeHandle handle;
  handle.owner = core();
  handle.steps = steps;
  handle.batch = batch;
  if constexpr (std::is_same_v<T, double>)
    handle.f64 = tape;
  else
    handle.f32 = tape;
  return py::make_tuple(y, h_n, c_out, py::cast(std::move(handle)));
}

template <typename T>
py::tuple PyStack::backward_impl(const fusedrnn::Stack<T>& stack, const std::shared_ptr<fusedrnn::StackTape<T>>& tape,
                                 const py::object& grad_y_obj, const py::object& grad_h_n_obj,
                                 const py::object& grad_c_n_obj) {
  const auto& cfg = cfg_;
  const Index steps = tape->steps, batch = tape->batch;
  const Index H = cfg.hidden_size, H_out = cfg.output_size(), D = cfg.directions();
  Array<T> grad_y = checked_array<T>(grad_y_obj, "grad_y", {steps, batch, D * H_out});
  auto grad_h_n = optional_array<T>(grad_h_n_obj, "grad_h_n", state_shape(cfg, batch, H_out));
  std::optional<Array<T>> grad_c_n;
  if (cfg.has_cell_state())
    grad_c_n = optional_array<T>(grad_c_n_obj, "grad_c_n", state_shape(cfg, batch, H));
  else if (!grad_c_n_obj.is_none())
    throw py::value_error("grad_c_n: expected None for a cell without a cell state");

  Array<T> grad_x({steps, batch, cfg.input_size});
  Array<T> grad_h0(state_shape(cfg, batch, H_out));
  std::optional<Array<T>> grad_c0;
  if (cfg.has_cell_state()) grad_c0 = Array<T>(state_shape(cfg, batch, H));
  py::list grads;
  fusedrnn::BackwardArgs<T> args;
  for (const auto& shape : stack.param_shapes()) {
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
  signals.run([&] { stack.backward(*tape, args); });
  return py::make_tuple(grad_x, grad_h0, array_or_none(grad_c0), grads);
}

// A state array the kernels update in place: exactly the model's dtype, C-contiguous, writable, of the
// expected shape (no conversion, which would update a copy).
template <typename T>
T* state_in_place(const py::object& obj, const std::string& name, const std::vector<Index>& shape) {
  using Exact = py::array_t<T, py::array::c_style>;
  if (!Exact::check_(obj))
    throw py::type_error(name + ": expected a C-contiguous numpy array of the model's dtype");
  auto a = py::reinterpret_borrow<Exact>(obj);
  if (!a.writeable()) throw py::value_error(name + ": expected a writable array");
  if (!is_aligned(a.data())) throw py::value_error(name + ": expected an array aligned to its item size");
  std::vector<Index> actual(a.shape(), a.shape() + a.ndim());
  if (actual != shape) throw py::value_error(name + ": expected shape " + shape_str(shape) + ", got " + shape_str(actual));
  return a.mutable_data();
}

// x: (N, I), or (I,) for one unbatched sequence (N = 1); h (L*D, N, H_out) and c (L*D, N, H) are the
// state, updated in place. Returns y: (N, D*H_out), or (D*H_out,) for an unbatched x. A stream calls this
// once per time step: the checks read the array headers and compose a message only when they fail.
template <typename T>
py::array PyStack::step_impl(const fusedrnn::Stack<T>& stack, const py::object& x_obj, const py::object& h_obj,
                             const py::object& c_obj, fusedrnn::StackWorkspace<T>* workspace) {
  const auto& cfg = cfg_;
  if (!py::isinstance<py::array>(x_obj)) throw py::type_error("x: expected a numpy array, got " + std::string(py::str(x_obj.get_type())));
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
  args.workspace = workspace;
  without_gil([&] { stack.forward(args); });
  return y;
}

py::array PyStack::step(const py::object& x, const py::object& h, const py::object& c, WorkspaceHandle* workspace) {
  if (workspace && workspace->owner != core())
    throw py::value_error("workspace: expected one made by this stack's new_workspace()");
  if (workspace && workspace->busy->exchange(true, std::memory_order_acquire)) workspace = nullptr;
  struct Release {
    WorkspaceHandle* held;
    ~Release() {
      if (held) held->busy->store(false, std::memory_order_release);
    }
  } release{workspace};
  if (f64_) return step_impl(*f64_, x, h, c, workspace ? workspace->f64.get() : nullptr);
  return step_impl(*f32_, x, h, c, workspace ? workspace->f32.get() : nullptr);
}

py::tuple PyStack::forward(const py::object& x, const py::object& h0, const py::object& c0, const py::object& lengths) {
  if (f64_) return forward_impl(*f64_, x, h0, c0, lengths, py::none(), false);
  return forward_impl(*f32_, x, h0, c0, lengths, py::none(), false);
}

py::tuple PyStack::forward_train(const py::object& x, const py::object& h0, const py::object& c0,
                                 const py::object& lengths, const py::object& masks) {
  if (f64_) return forward_impl(*f64_, x, h0, c0, lengths, masks, true);
  return forward_impl(*f32_, x, h0, c0, lengths, masks, true);
}

py::tuple PyStack::backward(const TapeHandle& tape, const py::object& grad_y, const py::object& grad_h_n,
                            const py::object& grad_c_n) {
  if (tape.owner != core())
    throw py::value_error("saved: expected a tape recorded by this stack");
  if (f64_) return backward_impl(*f64_, tape.f64, grad_y, grad_h_n, grad_c_n);
  return backward_impl(*f32_, tape.f32, grad_y, grad_h_n, grad_c_n);
}

// The compiled half of fusedrnn.Stream, which subclasses it in Python (construction, state, reset and
// conversions live there): step() goes from Python to the kernels in one call, with no Python frame.
class PyStreamBase {
 public:
  PyStreamBase(py::object stack, py::object layer, const std::vector<Index>& x_shape)
      : stack_obj_(std::move(stack)), layer_(std::move(layer)), x_shape_(x_shape) {
    stack_ = &stack_obj_.cast<PyStack&>();
    workspace_ = stack_->new_workspace();
  }

  // x_t as the stream expects it (exactly the model's dtype, C-contiguous, shape x_shape) goes straight
  // to the kernels; anything else through the subclass's _convert, which converts or explains.
  py::object step(const py::object& x) {
    py::object arr = x;
    if (!expected(x)) arr = py::cast(this).attr("_convert")(x);  // the Python object of the subclass
    if (layer_.attr(dirty_name_).cast<bool>()) {  // weights changed since the last upload: upload them now
      layer_.attr("_begin_call")();
      layer_.attr("_end_call")();
    }
    py::object y = stack_->step(arr, h, c, &workspace_);
    ++steps;
    return y;
  }

  py::object h = py::none();  // the state the kernels update in place (the subclass sets them)
  py::object c = py::none();
  long steps = 0;

 private:
  bool expected(const py::object& x) const {
    const bool ok = stack_->is_double() ? py::array_t<double, py::array::c_style>::check_(x)
                                        : py::array_t<float, py::array::c_style>::check_(x);
    if (!ok) return false;
    const auto a = py::reinterpret_borrow<py::array>(x);
    if (a.ndim() != static_cast<py::ssize_t>(x_shape_.size())) return false;
    for (std::size_t k = 0; k < x_shape_.size(); ++k)
      if (a.shape(static_cast<py::ssize_t>(k)) != x_shape_[k]) return false;
    return true;
  }

  py::object stack_obj_;  // keeps the PyStack alive
  PyStack* stack_ = nullptr;
  py::object layer_;
  py::str dirty_name_{"_dirty"};
  std::vector<Index> x_shape_;
  WorkspaceHandle workspace_;  // kept from step to step: a step allocates nothing
};

}  // namespace

PYBIND11_MODULE(FUSEDRNN_MODULE_NAME, m) {
  m.doc() = "fusedrnn's compiled kernels: fused RNN, LSTM and GRU stacks, forward and backward.";
  m.attr("isa") = FUSEDRNN_ISA_NAME;
  g_main_thread_ident = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  // A buffer that cannot be had: MemoryError with its size (pybind11's own says only std::bad_alloc).
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const fusedrnn::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });

  py::class_<TapeHandle>(m, "Saved", py::module_local(), "What a training forward keeps for backward (opaque).")
      .def_readonly("steps", &TapeHandle::steps)
      .def_readonly("batch", &TapeHandle::batch);

  py::class_<WorkspaceHandle>(m, "Workspace", py::module_local(),
                              "Workspaces a stream keeps from step to step (opaque).");

  py::class_<PyStack>(m, "Stack", py::module_local(), "A stack of recurrent layers (time-major arrays; see fusedrnn._config).")
      .def(py::init<const std::string&, Index, Index, Index, bool, bool, Index, bool, bool, bool, bool, double, bool, bool>(),
           py::arg("cell"),
           py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"), py::arg("bias"),
           py::arg("bidirectional"), py::arg("proj_size"), py::arg("linear_before_reset"), py::arg("double"),
           py::arg("residual") = false, py::arg("peephole") = false, py::arg("clip") = 0.0,
           py::arg("input_forget") = false, py::arg("hard_gates") = false)
      .def_property_readonly("is_double", &PyStack::is_double)
      .def("param_shapes", &PyStack::param_shapes)
      .def("_slices", &PyStack::slices)
      .def("set_weights", &PyStack::set_weights, py::arg("params"))
      .def("forward", &PyStack::forward, py::arg("x"), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
           py::arg("lengths") = py::none())
      .def("forward_train", &PyStack::forward_train, py::arg("x"), py::arg("h0") = py::none(),
           py::arg("c0") = py::none(), py::arg("lengths") = py::none(), py::arg("dropout_masks") = py::none())
      .def("new_workspace", &PyStack::new_workspace,
           "Workspaces for step() to keep from step to step (for one thread at a time).")
      .def("step", &PyStack::step, py::arg("x"), py::arg("h"), py::arg("c") = py::none(),
           py::arg("workspace") = py::none(),
           "One time step of x (N, I), or (I,) unbatched; the state h (L*D, N, H_out), c (L*D, N, H) is "
           "updated in place. Returns y (N, D*H_out), or (D*H_out,).")
      .def("backward", &PyStack::backward, py::arg("saved"), py::arg("grad_y"), py::arg("grad_h_n") = py::none(),
           py::arg("grad_c_n") = py::none());

  py::class_<PyStreamBase>(m, "StreamBase", py::module_local(),
                           "The compiled part of fusedrnn.Stream (see stream.py).")
      .def(py::init<py::object, py::object, const std::vector<Index>&>(), py::arg("stack"), py::arg("layer"),
           py::arg("x_shape"))
      .def("step", &PyStreamBase::step, py::arg("x_t"),
          "Advance by one step: x_t (N, I) or, unbatched, (I,) -> y_t (N, H_out) / (H_out,), the last layer's "
          "output. Any array-like x_t is accepted (converted to the model's dtype, shape checked).")
      .def_readwrite("_h", &PyStreamBase::h)
      .def_readwrite("_c", &PyStreamBase::c)
      .def_readwrite("steps", &PyStreamBase::steps, "The number of steps taken since the last reset.");

  // The schedule switches (tuning.hpp), for measuring and testing through fusedrnn._testing only.
  m.def("_tuning", [] {
    const fusedrnn::Tuning t = fusedrnn::current_tuning();
    py::dict out;
    out["projection_per_step"] = t.projection_per_step;
    out["claim_steps"] = t.claim_steps;
    out["claim_others_first"] = t.claim_others_first;
    out["rows_per_member"] = t.rows_per_member;
    out["directions_at_once"] = t.directions_at_once;
    out["slices"] = t.slices;
    return out;
  });
  m.def("_set_tuning", [](bool projection_per_step, bool claim_steps, bool claim_others_first, long rows_per_member,
                          bool directions_at_once, int slices) {
    fusedrnn::Tuning t;
    t.projection_per_step = projection_per_step;
    t.claim_steps = claim_steps;
    t.claim_others_first = claim_others_first;
    t.rows_per_member = rows_per_member;
    t.directions_at_once = directions_at_once;
    t.slices = slices;
    fusedrnn::set_tuning(t);
  }, py::arg("projection_per_step"), py::arg("claim_steps"), py::arg("claim_others_first"),
        py::arg("rows_per_member"), py::arg("directions_at_once"), py::arg("slices"));
  m.def("set_num_threads", &fusedrnn::set_num_threads, py::arg("n"), "Sets the number of threads fusedrnn may use.");
  m.def("get_num_threads", &fusedrnn::get_num_threads, "The number of threads fusedrnn may use.");
}
