#include "gil.hpp"

#include <chrono>
#include <cxxabi.h>
#include <thread>

namespace fusedrnn_py {

namespace {

unsigned long g_main_thread_ident = 0;

// CPython ends a thread that takes the GIL during finalization with pthread_exit, whose unwinding cannot
// pass a destructor (pybind11's gil_scoped_release), and std::terminate aborts the process. Such a thread
// parks instead, as CPython 3.14 does with its own: the process is exiting.
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

}  // namespace

void remember_main_thread() {
  g_main_thread_ident = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
}

void retake_gil(PyThreadState* state) {
  if (interpreter_finalizing()) park_forever();
  try {
    PyEval_RestoreThread(state);
  } catch (abi::__forced_unwind&) {  // finalizing began in between: pthread_exit's unwinding
    park_forever();
  }
}

SignalPoll::SignalPoll() : stop_([this] { return poll(); }) {}

fusedrnn::StopRequest* SignalPoll::request() {
  return PyThread_get_thread_ident() == g_main_thread_ident ? &stop_ : nullptr;
}

bool SignalPoll::poll() {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() == 0) return false;
  error_.emplace();  // takes the pending exception
  return true;
}

}  // namespace fusedrnn_py
