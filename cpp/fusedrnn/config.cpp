#include "fusedrnn/config.hpp"

#include "fusedrnn/cells/registry.hpp"

namespace fusedrnn {

CellKind parse_cell_kind(const std::string& name) {
  std::string choices;
  for (CellKind kind : kCellKinds) {
    const std::string known = with_cell<float>(kind, true, false, [](auto cell) { return decltype(cell)::kName; });
    if (name == known) return kind;
    choices += (choices.empty() ? "'" : ", '") + known + "'";
  }
  throw std::invalid_argument("cell: expected one of " + choices + ", got '" + name + "'");
}

CellInfo StackConfig::info() const {
  return with_cell<float>(*this, [](auto cell) { return cell_info<decltype(cell)>(); });
}

// The names of the configuration fields behind CellOption bits, for error messages.
static std::string option_names(unsigned options) {
  static const std::pair<unsigned, const char*> names[] = {
      {kOptionProjection, "proj_size"}, {kOptionPeephole, "peephole"},       {kOptionClip, "clip"},
      {kOptionInputForget, "input_forget"}, {kOptionHardGates, "hard_gates"}, {kOptionLayerNorm, "layer_norm"}};
  std::string out;
  for (const auto& [bit, name] : names)
    if (options & bit) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

void StackConfig::validate() const {
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  if (input_size < 1) fail("input_size: expected >= 1, got " + std::to_string(input_size));
  if (hidden_size < 1) fail("hidden_size: expected >= 1, got " + std::to_string(hidden_size));
  if (num_layers < 1) fail("num_layers: expected >= 1, got " + std::to_string(num_layers));
  if (!(clip >= 0.0)) fail("clip: expected >= 0 (0 = none), got " + std::to_string(clip));
  if (!(zoneout >= 0.0 && zoneout < 1.0)) fail("zoneout: expected 0 <= zoneout < 1, got " + std::to_string(zoneout));
  if (zoneout > 0.0 && proj_size > 0) fail("zoneout: not with proj_size (the projected h has no previous units)");
  if (layer_norm && cell == CellKind::kGru && !linear_before_reset)
    fail("layer_norm: the gru cell is normalized in its linear-before-reset form only, got linear_before_reset "
         "false");
  const CellInfo cell_kind = info();
  const unsigned refused = options() & ~cell_kind.options;
  if (refused != 0)
    fail(option_names(refused) + ": not an option of the " + cell_kind.name + " cell (it takes " +
         (cell_kind.options & ~unsigned{kOptionLinearBeforeReset} ? option_names(cell_kind.options) : "none") + ")");
  if (proj_size < 0 || (proj_size > 0 && proj_size >= hidden_size))
    fail("proj_size: expected 0, or 0 < proj_size < hidden_size, got " + std::to_string(proj_size));
}

}  // namespace fusedrnn
