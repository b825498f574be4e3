// What is process-wide: the thread budget, the schedule switches (for fusedrnn._testing only), and the
// translation of the core's errors into Python's.
#include <pybind11/pybind11.h>

#include "bindings.hpp"
#include "fusedrnn/buffer.hpp"
#include "fusedrnn/threads.hpp"
#include "fusedrnn/tuning.hpp"

namespace fusedrnn_py {

void register_process(py::module_& m) {
  // A buffer that cannot be had: MemoryError with its size (pybind11's own says only std::bad_alloc).
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const fusedrnn::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });
  m.def("set_num_threads", &fusedrnn::set_num_threads, py::arg("n"), "Sets the number of threads fusedrnn may use.");
  m.def("get_num_threads", &fusedrnn::get_num_threads, "The number of threads fusedrnn may use.");

  py::class_<fusedrnn::Tuning>(m, "_Tuning", py::module_local(), "The schedule switches (tuning.hpp).")
      .def(py::init<>())
      .def_readwrite("projection_per_step", &fusedrnn::Tuning::projection_per_step)
      .def_readwrite("claim_steps", &fusedrnn::Tuning::claim_steps)
      .def_readwrite("claim_others_first", &fusedrnn::Tuning::claim_others_first)
      .def_readwrite("rows_per_member", &fusedrnn::Tuning::rows_per_member)
      .def_readwrite("directions_at_once", &fusedrnn::Tuning::directions_at_once)
      .def_readwrite("slices", &fusedrnn::Tuning::slices);
  m.def("_tuning", &fusedrnn::current_tuning);
  m.def("_set_tuning", &fusedrnn::set_tuning, py::arg("tuning"));
}

}  // namespace fusedrnn_py
