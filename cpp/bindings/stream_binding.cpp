// The compiled half of fusedrnn.Stream, which subclasses it in Python (construction, state, reset and
// conversions live there): step() goes from Python to the kernels in one call, with no Python frame.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <utility>
#include <vector>

#include "bindings.hpp"

namespace fusedrnn_py {

namespace {

class PyStreamBase {
 public:
  // refresh: called before every step; it uploads weights changed since the last upload.
  PyStreamBase(py::object stack, py::object refresh, const std::vector<Index>& x_shape)
      : stack_obj_(std::move(stack)), refresh_(std::move(refresh)), x_shape_(x_shape) {
    stack_ = &stack_obj_.cast<StackBinding&>();
    workspace_ = stack_->new_workspace();
  }

  // x_t as the stream expects it (exactly the model's dtype, C-contiguous, shape x_shape) goes straight
  // to the kernels; anything else through the subclass's _convert, which converts or explains.
  py::object step(const py::object& x) {
    py::object arr = x;
    if (!stack_->takes_as_is(x, x_shape_)) arr = py::cast(this).attr("_convert")(x);  // the subclass's
    refresh_();
    py::object y = stack_->step(arr, h, c, &workspace_);
    ++steps;
    return y;
  }

  py::object h = py::none();  // the state the kernels update in place (the subclass sets them)
  py::object c = py::none();
  long steps = 0;

 private:
  py::object stack_obj_;  // keeps the stack alive
  StackBinding* stack_ = nullptr;
  py::object refresh_;
  std::vector<Index> x_shape_;
  WorkspaceHandle workspace_;  // kept from step to step: a step allocates nothing
};

}  // namespace

void register_stream(py::module_& m) {
  py::class_<PyStreamBase>(m, "StreamBase", py::module_local(), "The compiled part of fusedrnn.Stream (see stream.py).")
      .def(py::init<py::object, py::object, const std::vector<Index>&>(), py::arg("stack"), py::arg("refresh"),
           py::arg("x_shape"))
      .def("step", &PyStreamBase::step, py::arg("x_t"),
           "Advance by one step: x_t (N, I) or, unbatched, (I,) -> y_t (N, H_out) / (H_out,), the last layer's "
           "output. Any array-like x_t is accepted (converted to the model's dtype, shape checked).")
      .def_readwrite("_h", &PyStreamBase::h)
      .def_readwrite("_c", &PyStreamBase::c)
      .def_readwrite("steps", &PyStreamBase::steps, "The number of steps taken since the last reset.");
}

}  // namespace fusedrnn_py
