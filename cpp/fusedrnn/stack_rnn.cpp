// The vanilla RNN stacks (tanh, relu), compiled apart from the other cells to keep translation units small.
#include "fusedrnn/cells/rnn.hpp"
#include "fusedrnn/stack_impl.hpp"

namespace fusedrnn {
template struct StackRunner<RnnCell<float, Nonlinearity::kTanh>, float>;
template struct StackRunner<RnnCell<float, Nonlinearity::kRelu>, float>;
template struct StackRunner<RnnCell<double, Nonlinearity::kTanh>, double>;
template struct StackRunner<RnnCell<double, Nonlinearity::kRelu>, double>;
}  // namespace fusedrnn
