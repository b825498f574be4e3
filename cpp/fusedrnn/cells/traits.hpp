// What a cell declares about itself, and the compile-time check of those declarations.
//
// A cell is a struct template over the scalar type T (see lstm.hpp, gru.hpp, rnn.hpp) that computes one
// time step of one row (sequence) from the products the layer has made. The layer (layer/) owns the
// products, the threads and the tape; the cell owns the pointwise maths. Every cell declares:
//
//   kName              its name in StackConfig and in Python ("lstm", ...)
//   kGates             G, the gate blocks of W_ih / W_hh (PyTorch's row order inside each)
//   kSavedGates        values per unit that forward saves for backward without options (saved_gates
//                      gives the count for a configuration: with clip, the activations' inputs too)
//   kHasCellState      an LSTM-style c beside h
//   kOptions           the CellOption bits it accepts (StackConfig::validate refuses the others)
//   kPeepholeVectors   peephole weights per unit when kOptionPeephole is set (else 0)
//   kPhases            the shape of its step (StepPhases)
//   kSeparateHiddenGrad the recurrent product's gradient differs from the input projection's
//   kDirectHiddenGrad  h entering the step reaches h' other than through W_hh (GRU's z ⊙ h)
//
// and these functions (checked by check_cell below, per phase shape):
//   saved_gates(const CellOptions<T>&)             values per unit saved for backward with these options
//   split_bias(b_ih, b_hh, H, bias_x, bias_h)     in PyTorch row order: which biases fold into the input
//                                                  projection (bias_x) and which stay inside the step
//   forward_row(const CellRow<T>&), backward_row(const CellGradRow<T>&)
//   kSecondProduct: forward_row_first, backward_row_first, backward_row_second, and
//                   second_input_from_tape (the first phase's output, recomputed from the tape)
//   kOptionProjection: output_from_tape (h before the projection, recomputed from the tape)
//   kWholeRow: row_parameters(H), the count of its own parameters (biases included: the layer adds
//              none), pack_row_parameters(ParamArrays<const T*>, H, out) and
//              unpack_row_gradients(grad, H, LayerGrads<T>); CellRow::row_params holds them, and backward
//              accumulates their gradient into CellGradRow::row_params_grad
#pragma once

#include <type_traits>
#include <utility>

#include "fusedrnn/activations.hpp"
#include "fusedrnn/layer_types.hpp"
#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

// How a step's pointwise work depends on the step's products.
enum class StepPhases {
  // Each unit needs only its own gates: any slice of the units is computed on its own.
  kPointwise,
  // The last gate block's recurrent product multiplies the first phase's output (CellRow::rh, e.g. the
  // reset-before GRU's r ⊙ h) instead of h: first phase, that product, second phase.
  kSecondProduct,
  // A unit needs values over the whole row (a normalization): the layer keeps each row's units in one
  // slice, so the cell always sees all H units of a row.
  kWholeRow,
};

// Options a stack may set, as bits: a cell lists the ones it accepts in kOptions.
enum CellOption : unsigned {
  kOptionProjection = 1u << 0,         // proj_size: h' = W_hr h, the layer's product after the step
  kOptionPeephole = 1u << 1,           // peephole weights, kPeepholeVectors per unit
  kOptionClip = 1u << 2,               // bounds the activations' inputs to [-clip, clip]
  kOptionInputForget = 1u << 3,        // f = 1 - i
  kOptionHardGates = 1u << 4,          // the gates use the hard sigmoid
  kOptionLinearBeforeReset = 1u << 5,  // GRU: which of its two forms (chosen at dispatch)
  kOptionLayerNorm = 1u << 6,          // layer normalization (a cell of its own, chosen at dispatch)
  kAllCellOptions = (1u << 7) - 1,
};

// A cell's declarations as one value, for code that has a StackConfig rather than a cell type.
struct CellInfo {
  const char* name = "";
  Index gates = 0;
  bool cell_state = false;
  unsigned options = 0;
  Index peephole_vectors = 0;
  StepPhases phases = StepPhases::kPointwise;
};

template <typename Cell>
constexpr CellInfo cell_info() {
  return CellInfo{Cell::kName, Cell::kGates, Cell::kHasCellState, Cell::kOptions, Cell::kPeepholeVectors,
                  Cell::kPhases};
}

template <typename Cell>
constexpr bool has_second_product() {
  return Cell::kPhases == StepPhases::kSecondProduct;
}

namespace cell_detail {

// Detection of the functions a cell must define, by the call expression they must accept.
template <typename Cell, typename T, typename = void>
struct has_forward_row : std::false_type {};
template <typename Cell, typename T>
struct has_forward_row<Cell, T, std::void_t<decltype(Cell::forward_row(std::declval<const CellRow<T>&>()))>>
    : std::true_type {};

template <typename Cell, typename T, typename = void>
struct has_forward_row_first : std::false_type {};
template <typename Cell, typename T>
struct has_forward_row_first<Cell, T,
                             std::void_t<decltype(Cell::forward_row_first(std::declval<const CellRow<T>&>()))>>
    : std::true_type {};

template <typename Cell, typename T, typename = void>
struct has_backward_row : std::false_type {};
template <typename Cell, typename T>
struct has_backward_row<Cell, T, std::void_t<decltype(Cell::backward_row(std::declval<const CellGradRow<T>&>()))>>
    : std::true_type {};

template <typename Cell, typename T, typename = void>
struct has_backward_phases : std::false_type {};
template <typename Cell, typename T>
struct has_backward_phases<Cell, T,
                           std::void_t<decltype(Cell::backward_row_first(std::declval<const CellGradRow<T>&>())),
                                       decltype(Cell::backward_row_second(std::declval<const CellGradRow<T>&>()))>>
    : std::true_type {};

template <typename Cell, typename T, typename = void>
struct has_second_input_from_tape : std::false_type {};
template <typename Cell, typename T>
struct has_second_input_from_tape<Cell, T,
                                  std::void_t<decltype(Cell::second_input_from_tape(
                                      std::declval<const CellGradRow<T>&>(), std::declval<T*>()))>>
    : std::true_type {};

template <typename Cell, typename T, typename = void>
struct has_output_from_tape : std::false_type {};
template <typename Cell, typename T>
struct has_output_from_tape<Cell, T,
                            std::void_t<decltype(Cell::output_from_tape(std::declval<const CellGradRow<T>&>(),
                                                                        std::declval<T*>()))>>
    : std::true_type {};

template <typename Cell, typename T, typename = void>
struct has_row_parameters : std::false_type {};
template <typename Cell, typename T>
struct has_row_parameters<
    Cell, T,
    std::void_t<std::enable_if_t<std::is_same_v<decltype(Cell::row_parameters(Index{})), Index>>,
                decltype(Cell::pack_row_parameters(std::declval<const ParamArrays<const T*>&>(), Index{},
                                                   std::declval<T*>())),
                decltype(Cell::unpack_row_gradients(std::declval<const T*>(), Index{},
                                                    std::declval<const LayerGrads<T>&>()))>> : std::true_type {};

template <typename Cell, typename T, typename = void>
struct has_bookkeeping : std::false_type {};
template <typename Cell, typename T>
struct has_bookkeeping<
    Cell, T,
    std::void_t<std::enable_if_t<std::is_same_v<decltype(Cell::saved_gates(std::declval<const CellOptions<T>&>())),
                                                 Index>>,
                decltype(Cell::split_bias(std::declval<const RowVector<T>&>(), std::declval<const RowVector<T>&>(),
                                          Index{}, std::declval<RowVector<T>&>(), std::declval<RowVector<T>&>()))>>
    : std::true_type {};

}  // namespace cell_detail

// True when Cell<T> declares everything the layer needs; a missing or inconsistent declaration stops
// the build here with a message naming it, rather than deep inside the layer's templates.
template <typename Cell, typename T>
constexpr bool check_cell() {
  using namespace cell_detail;
  static_assert(std::is_same_v<std::decay_t<decltype(Cell::kName)>, const char*>, "kName: the cell's name");
  static_assert(Cell::kGates >= 1, "kGates: at least one gate block");
  static_assert(Cell::kSavedGates >= 1, "kSavedGates: what forward saves per unit");
  static_assert(std::is_same_v<std::decay_t<decltype(Cell::kHasCellState)>, bool>, "kHasCellState: a bool");
  static_assert((Cell::kOptions & ~unsigned{kAllCellOptions}) == 0, "kOptions: CellOption bits only");
  static_assert(((Cell::kOptions & kOptionPeephole) != 0) == (Cell::kPeepholeVectors > 0),
                "kPeepholeVectors: > 0 exactly when the cell accepts kOptionPeephole");
  static_assert(std::is_same_v<std::decay_t<decltype(Cell::kPhases)>, StepPhases>, "kPhases: a StepPhases");
  static_assert(std::is_same_v<std::decay_t<decltype(Cell::kSeparateHiddenGrad)>, bool> &&
                    std::is_same_v<std::decay_t<decltype(Cell::kDirectHiddenGrad)>, bool>,
                "kSeparateHiddenGrad, kDirectHiddenGrad: bools");
  static_assert(has_bookkeeping<Cell, T>::value,
                "saved_gates(const CellOptions<T>&) -> Index and split_bias(b_ih, b_hh, H, bias_x, bias_h)");
  static_assert(has_forward_row<Cell, T>::value, "forward_row(const CellRow<T>&)");
  if constexpr (Cell::kPhases == StepPhases::kSecondProduct) {
    static_assert(has_forward_row_first<Cell, T>::value, "kSecondProduct: forward_row_first(const CellRow<T>&)");
    static_assert(has_backward_phases<Cell, T>::value,
                  "kSecondProduct: backward_row_first and backward_row_second(const CellGradRow<T>&)");
    static_assert(has_second_input_from_tape<Cell, T>::value,
                  "kSecondProduct: second_input_from_tape(const CellGradRow<T>&, T* out)");
    static_assert(Cell::kSeparateHiddenGrad, "kSecondProduct: the recurrent gradient differs from the input's");
    static_assert((Cell::kOptions & kOptionProjection) == 0, "kSecondProduct: the layer has no projection for it");
  } else {
    static_assert(has_backward_row<Cell, T>::value, "backward_row(const CellGradRow<T>&)");
  }
  if constexpr (Cell::kPhases == StepPhases::kWholeRow) {
    static_assert(has_row_parameters<Cell, T>::value,
                  "kWholeRow: row_parameters(Index H) -> Index, pack_row_parameters(const ParamArrays<const T*>&, "
                  "Index H, T* out) and unpack_row_gradients(const T* grad, Index H, const LayerGrads<T>&)");
    static_assert((Cell::kOptions & (kOptionProjection | kOptionPeephole)) == 0,
                  "kWholeRow: the layer has no projection or peepholes for it");
  }
  if constexpr ((Cell::kOptions & kOptionProjection) != 0)
    static_assert(has_output_from_tape<Cell, T>::value,
                  "kOptionProjection: output_from_tape(const CellGradRow<T>&, T* out)");
  return true;
}

}  // namespace fusedrnn
