// One direction of one layer over time, generic over the cell, run by a team of threads.
//
//   layer/plan.hpp              how a call is run: projection blocks and the step schedule, chosen once
//   layer/workspace.hpp         the call's buffers and arguments
//   layer/projection.hpp        the input projection x · W_ihᵀ
//   layer/forward.hpp           the forward time loop on each schedule
//   layer/backward.hpp          backward through time
//   layer/weight_gradients.hpp  the products over all steps after backward's loop
//
// Variable lengths (PyTorch's packed-sequence semantics without packing): at time t a sequence n is
// active while t < lengths[n]. Inactive sequences keep their state and output zeros, so the forward
// direction stops at each sequence's last step and the reverse direction starts there.
#pragma once

#include "fusedrnn/layer/backward.hpp"
#include "fusedrnn/layer/forward.hpp"
#include "fusedrnn/layer/plan.hpp"
#include "fusedrnn/layer/workspace.hpp"
