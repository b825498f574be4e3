// What the binding units share: the register functions module.cpp wires, and the handles and the
// stack interface that the stack and stream bindings pass between them.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <vector>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn_py {

namespace py = pybind11;
using fusedrnn::Index;

// What record() keeps for backward, opaque to Python: the core stack it was recorded on (which also
// fixes its scalar type) and that stack's tape.
struct TapeHandle {
  std::shared_ptr<const void> owner;
  Index steps = 0, batch = 0;
  std::shared_ptr<void> tape;
};

// Workspaces a stream keeps from step to step (opaque to Python). One call uses them at a time: a call
// that finds them busy (a stream stepped from two threads at once) works on its own instead.
struct WorkspaceHandle {
  std::shared_ptr<const void> owner;  // the core stack they were made for
  std::shared_ptr<void> workspace;
  std::shared_ptr<std::atomic<bool>> busy = std::make_shared<std::atomic<bool>>(false);
};

// A compiled stack of any scalar type, as the stream binding steps it.
class StackBinding {
 public:
  virtual ~StackBinding() = default;
  // Whether x goes to the kernels as it is: exactly the stack's dtype, C-contiguous, of this shape.
  virtual bool takes_as_is(const py::object& x, const std::vector<Index>& shape) const = 0;
  virtual WorkspaceHandle new_workspace() const = 0;
  // One time step; h and c are updated in place.
  virtual py::array step(const py::object& x, const py::object& h, const py::object& c,
                         WorkspaceHandle* workspace) = 0;
};

void register_config(py::module_& m);
void register_handles(py::module_& m);  // Saved, Workspace and the stacks' common base
template <typename T>
void register_stack(py::module_& m, const char* name);  // explicitly instantiated for float and double
void register_stream(py::module_& m);
void register_process(py::module_& m);  // threads, tuning, and the translation of core errors

}  // namespace fusedrnn_py
