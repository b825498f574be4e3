// The extension module of one kernel variant: it only wires the bindings (one register function per
// part, one stack class per scalar type).
#include <pybind11/pybind11.h>

#include "bindings.hpp"
#include "gil.hpp"

PYBIND11_MODULE(FUSEDRNN_MODULE_NAME, m) {
  namespace fp = fusedrnn_py;
  m.doc() = "fusedrnn's compiled kernels: fused RNN, LSTM and GRU stacks, forward and backward.";
  m.attr("isa") = FUSEDRNN_ISA_NAME;
  fp::remember_main_thread();
  fp::register_process(m);
  fp::register_config(m);
  fp::register_handles(m);
  fp::register_stack<float>(m, "StackFloat32");
  fp::register_stack<double>(m, "StackFloat64");
  pybind11::dict stacks;  // by the name of the dtype they compute in
  stacks["float32"] = m.attr("StackFloat32");
  stacks["float64"] = m.attr("StackFloat64");
  m.attr("stacks") = stacks;
  fp::register_stream(m);
}
