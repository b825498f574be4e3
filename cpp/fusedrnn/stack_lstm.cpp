// The LSTM stack, compiled apart from the other cells to keep translation units small.
#include "fusedrnn/cells/lstm.hpp"
#include "fusedrnn/stack_impl.hpp"

namespace fusedrnn {
template struct StackRunner<LstmCell<float>, float>;
template struct StackRunner<LstmCell<double>, double>;
}  // namespace fusedrnn
