// Layer-normalized LSTM (haste's LayerNormLSTM), gate order i, f, g, o. LN (layer_norm.hpp) normalizes
// over all 4H values of a product, and over the H values of c':
//   a = LN(W_ih x) ⊙ γ_x + LN(W_hh h) ⊙ γ_h + b_ih + b_hh
//   i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
//   c' = f ⊙ c + i ⊙ g       h' = o ⊙ tanh(LN(c') ⊙ γ_c + β_c)
// A row's normalization needs all of its units, so the step is StepPhases::kWholeRow: the layer passes
// the raw products and the cell adds the biases itself (its row parameters hold them with γ and β).
// Forward saves the two raw products and the four activated gates; backward recomputes the moments
// and c' from them.
#pragma once

#include "fusedrnn/cells/layer_norm.hpp"
#include "fusedrnn/cells/traits.hpp"

namespace fusedrnn {

template <typename T>
struct LayerNormLstmCell {
  static constexpr const char* kName = "lstm";
  static constexpr Index kGates = 4;
  static constexpr Index kSavedGates = 12;  // W_ih x, W_hh h (raw), then i, f, g, o
  static constexpr bool kHasCellState = true;
  static constexpr unsigned kOptions = kOptionLayerNorm | kOptionHardGates;
  static constexpr Index kPeepholeVectors = 0;
  static constexpr StepPhases kPhases = StepPhases::kWholeRow;
  static constexpr bool kSeparateHiddenGrad = true;  // each product has its own normalization
  static constexpr bool kDirectHiddenGrad = false;

  static Index saved_gates(const CellOptions<T>&) { return kSavedGates; }

  // The biases are added after the normalizations, by the cell: nothing folds into the products.
  static void split_bias(const RowVector<T>& b_ih, const RowVector<T>&, Index, RowVector<T>& bias_x,
                         RowVector<T>& bias_h) {
    bias_x.setZero(b_ih.size());
    bias_h.setZero(b_ih.size());
  }

  // Row parameters: γ_x [4H], γ_h [4H], b_ih [4H], b_hh [4H], γ_c [H], β_c [H].
  static Index row_parameters(Index H) { return 18 * H; }

  static void pack_row_parameters(const ParamArrays<const T*>& p, Index H, T* out) {
    const Index GH = 4 * H;
    pack_normalized_products(p, GH, out);
    Vec<T>(out + 4 * GH, H) = ConstVec<T>(p.norm_cell_gain, H);
    Vec<T>(out + 4 * GH + H, H) = ConstVec<T>(p.norm_cell_shift, H);
  }

  static void unpack_row_gradients(const T* grad, Index H, const LayerGrads<T>& g) {
    const Index GH = 4 * H;
    unpack_normalized_products(grad, GH, g);
    Vec<T>(g.norm_cell_gain, H) = ConstVec<T>(grad + 4 * GH, H);
    Vec<T>(g.norm_cell_shift, H) = ConstVec<T>(grad + 4 * GH + H, H);
  }

  static void forward_row(const CellRow<T>& r) {
    const Index H = r.units, GH = 4 * H;
    const bool hard = r.options->hard_gates;
    const T* p = r.row_params;
    Vec<T> x_raw(r.gates, GH), h_raw(r.gates + GH, GH), a(r.gates + 2 * GH, GH);
    x_raw = ConstVec<T>(r.xg, GH);
    h_raw = ConstVec<T>(r.hg, GH);
    const RowMoments<T> mx = row_moments(x_raw), mh = row_moments(h_raw);
    a = (x_raw - mx.mean) * mx.rstd * ConstVec<T>(p, GH) + (h_raw - mh.mean) * mh.rstd * ConstVec<T>(p + GH, GH) +
        ConstVec<T>(p + 2 * GH, GH) + ConstVec<T>(p + 3 * GH, GH);
    Vec<T> i_f(a.data(), 2 * H), i(a.data(), H), f(a.data() + H, H), g(a.data() + 2 * H, H), o(a.data() + 3 * H, H);
    gate_into(i_f, i_f, hard);
    tanh_into(g, g);
    gate_into(o, o, hard);
    Vec<T> c(r.c, H);
    c = f * c + i * g;
    const RowMoments<T> mc = row_moments(c);
    Vec<T>(r.h, H) =
        o * ((c - mc.mean) * mc.rstd * ConstVec<T>(p + 4 * GH, H) + ConstVec<T>(p + 4 * GH + H, H)).tanh();
  }

  static void backward_row(const CellGradRow<T>& r) {
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    const Index H = r.units, GH = 4 * H;
    const bool hard = r.options->hard_gates;
    const T* p = r.row_params;
    T* dp = r.row_params_grad;
    ConstVec<T> x_raw(r.gates, GH), h_raw(r.gates + GH, GH);
    ConstVec<T> i(r.gates + 2 * GH, H), f(r.gates + 2 * GH + H, H), g(r.gates + 2 * GH + 2 * H, H),
        o(r.gates + 2 * GH + 3 * H, H);
    ConstVec<T> c_prev(r.c_prev, H), dm(r.dh, H), gamma_c(p + 4 * GH, H);
    const Array c_new = f * c_prev + i * g;
    const RowMoments<T> mc = row_moments(c_new);
    const Array c_hat = (c_new - mc.mean) * mc.rstd;
    const Array tanh_c = (c_hat * gamma_c + ConstVec<T>(p + 4 * GH + H, H)).tanh();
    // The output gate, then c' through tanh and its normalization.
    Vec<T> da(r.dg_in, GH);  // the gate pre-activations' gradient, until the normalizations take it over
    Vec<T> di(r.dg_in, H), df(r.dg_in + H, H), dg(r.dg_in + 2 * H, H), d_o(r.dg_in + 3 * H, H);
    d_o = dm * tanh_c;
    mul_gate_grad(d_o, o, hard);
    Array d_shifted = dm * o * tanh_grad(tanh_c);  // wrt LN(c') ⊙ γ_c + β_c
    Vec<T>(dp + 4 * GH, H) += d_shifted * c_hat;
    Vec<T>(dp + 4 * GH + H, H) += d_shifted;
    d_shifted *= gamma_c;
    Vec<T> dc(r.dc, H);
    Array dc_norm(H);
    layer_norm_backward(d_shifted, c_hat, mc.rstd, dc_norm);
    dc += dc_norm;  // now the total gradient wrt c'
    di = dc * g;
    mul_gate_grad(di, i, hard);
    df = dc * c_prev;
    mul_gate_grad(df, f, hard);
    dg = dc * i * tanh_grad(g);
    dc *= f;  // wrt c entering the step
    // Biases and gains, then each product through its normalization.
    Vec<T>(dp + 2 * GH, GH) += da;
    Vec<T>(dp + 3 * GH, GH) += da;
    const RowMoments<T> mx = row_moments(x_raw), mh = row_moments(h_raw);
    const Array x_hat = (x_raw - mx.mean) * mx.rstd, h_hat = (h_raw - mh.mean) * mh.rstd;
    Vec<T>(dp, GH) += da * x_hat;
    Vec<T>(dp + GH, GH) += da * h_hat;
    layer_norm_backward(Array(da * ConstVec<T>(p + GH, GH)), h_hat, mh.rstd, Vec<T>(r.dg_hid, GH));
    layer_norm_backward(Array(da * ConstVec<T>(p, GH)), x_hat, mx.rstd, da);
  }
};

static_assert(check_cell<LayerNormLstmCell<float>, float>() && check_cell<LayerNormLstmCell<double>, double>());

}  // namespace fusedrnn
