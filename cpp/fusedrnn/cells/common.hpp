// What the cells share.
#pragma once

#include "fusedrnn/activations.hpp"
#include "fusedrnn/layer_types.hpp"
#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

// Traits every cell states (each cell struct defines them):
//   kGates              G, the gate blocks of W_ih / W_hh
//   kSavedGates         S, values per unit that forward saves for backward
//   kHasCellState       an LSTM-style c beside h
//   kTwoPhase           the step needs all of a first phase (r ⊙ h) before its second product
//   kSeparateHiddenGrad the recurrent product's gradient differs from the input projection's
//   kDirectHiddenGrad   h entering the step reaches h' other than through W_hh (GRU's z ⊙ h)
// and split_bias(b_ih, b_hh, H, bias_x, bias_h) in PyTorch row order: which biases fold into the
// input projection (bias_x) and which stay inside the step (bias_h).

}  // namespace fusedrnn
