// The GRU stacks (both forms), compiled apart from the other cells to keep translation units small.
#include "fusedrnn/cells/gru.hpp"
#include "fusedrnn/stack_impl.hpp"

namespace fusedrnn {
template struct StackRunner<GruCell<float, true>, float>;
template struct StackRunner<GruCell<float, false>, float>;
template struct StackRunner<GruCell<double, true>, double>;
template struct StackRunner<GruCell<double, false>, double>;
}  // namespace fusedrnn
