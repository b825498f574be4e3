"""The C++ cell interface (cpp/fusedrnn/cells/traits.hpp) refuses an incomplete or inconsistent cell at
compile time, with a message naming what is missing.

Each case compiles a small translation unit against the headers with the C++ compiler (syntax and
templates only, no code generated). Needs a compiler and Eigen's headers (the cmeel-eigen wheel, in the
test extras); skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CPP_DIR = Path(__file__).resolve().parent.parent / "cpp"


def _eigen_include() -> Path | None:
    try:
        prefix = subprocess.run(
            [sys.executable, "-m", "cmeel", "cmake"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    include = Path(prefix) / "include" / "eigen3"
    return include if (include / "Eigen" / "Core").exists() else None


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


EIGEN = _eigen_include()
CXX = _compiler()
needs_toolchain = pytest.mark.skipif(
    EIGEN is None or CXX is None or not (CPP_DIR / "fusedrnn").is_dir(),
    reason="needs a C++ compiler, Eigen's headers (pip install cmeel-eigen) and the source tree's cpp/",
)

# A complete pointwise cell (an identity-like RNN), the starting point of the broken ones below.
GOOD_CELL = """
template <typename T>
struct TestCell {
  static constexpr const char* kName = "test";
  static constexpr Index kGates = 1;
  static constexpr Index kSavedGates = 1;
  static constexpr bool kHasCellState = false;
  static constexpr unsigned kOptions = OPTIONS;
  static constexpr Index kPeepholeVectors = PEEPHOLES;
  static constexpr StepPhases kPhases = PHASES;
  static constexpr bool kSeparateHiddenGrad = false;
  static constexpr bool kDirectHiddenGrad = false;
  static Index saved_gates(const CellOptions<T>&) { return 1; }
  static void split_bias(const RowVector<T>& b_ih, const RowVector<T>& b_hh, Index, RowVector<T>& bias_x,
                         RowVector<T>& bias_h) {
    bias_x = b_ih + b_hh;
    bias_h.setZero(b_ih.size());
  }
  static void forward_row(const CellRow<T>&) {}
  BACKWARD
};
static_assert(check_cell<TestCell<float>, float>());
"""


def _compile(cell: str) -> subprocess.CompletedProcess:
    source = '#include "fusedrnn/cells/traits.hpp"\nnamespace fusedrnn {\n' + cell + "\n}\n"
    return subprocess.run(
        [CXX, "-std=c++17", "-fsyntax-only", "-x", "c++", "-", f"-I{CPP_DIR}", f"-I{EIGEN}"],
        input=source,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _cell(
    options: str = "0",
    peepholes: str = "0",
    phases: str = "StepPhases::kPointwise",
    backward: str = "static void backward_row(const CellGradRow<T>&) {}",
) -> str:
    return (
        textwrap.dedent(GOOD_CELL)
        .replace("OPTIONS", options)
        .replace("PEEPHOLES", peepholes)
        .replace("PHASES", phases)
        .replace("BACKWARD", backward)
    )


@needs_toolchain
def test_a_complete_cell_compiles():
    result = _compile(_cell())
    assert result.returncode == 0, result.stderr


@needs_toolchain
@pytest.mark.parametrize(
    "cell, message",
    [
        (_cell(backward=""), "backward_row(const CellGradRow<T>&)"),
        (_cell(peepholes="3"), "kPeepholeVectors: > 0 exactly when the cell accepts kOptionPeephole"),
        (
            _cell(options="kOptionPeephole"),
            "kPeepholeVectors: > 0 exactly when the cell accepts kOptionPeephole",
        ),
        (_cell(phases="StepPhases::kSecondProduct"), "kSecondProduct: forward_row_first"),
        (_cell(options="kOptionProjection"), "kOptionProjection: output_from_tape"),
        (_cell(options="1u << 9"), "kOptions: CellOption bits only"),
    ],
    ids=[
        "no-backward",
        "peepholes-without-option",
        "option-without-peepholes",
        "second-product",
        "projection",
        "unknown-option",
    ],
)
def test_an_incomplete_cell_is_refused_naming_what_is_missing(cell, message):
    result = _compile(cell)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]
