// Compute without the GIL, and Ctrl-C during a long call.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>

#include "fusedrnn/threads.hpp"

namespace fusedrnn_py {

namespace py = pybind11;

// Records which thread is Python's main thread (the one whose calls can be stopped by a signal).
void remember_main_thread();

// A thread that comes back from the kernels while the interpreter is finalizing parks instead of
// taking the GIL (see gil.cpp).
void retake_gil(PyThreadState* state);

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
class SignalPoll {
 public:
  SignalPoll();
  SignalPoll(const SignalPoll&) = delete;
  SignalPoll& operator=(const SignalPoll&) = delete;

  fusedrnn::StopRequest* request();

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
  bool poll();
  fusedrnn::StopRequest stop_;
  std::optional<py::error_already_set> error_;
};

}  // namespace fusedrnn_py
