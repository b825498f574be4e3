// The layer-normalized LSTM and GRU stacks, compiled apart from the other cells to keep translation units
// small.
#include "fusedrnn/cells/layer_norm_gru.hpp"
#include "fusedrnn/cells/layer_norm_lstm.hpp"
#include "fusedrnn/stack_impl.hpp"

namespace fusedrnn {
template struct StackRunner<LayerNormLstmCell<float>, float>;
template struct StackRunner<LayerNormLstmCell<double>, double>;
template struct StackRunner<LayerNormGruCell<float>, float>;
template struct StackRunner<LayerNormGruCell<double>, double>;
}  // namespace fusedrnn
