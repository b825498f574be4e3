"""The AVX-512 kernels (the ``avx512`` variant): against the reference, forward and backward, and against
the AVX2 kernels bit for bit where only the panel products and exact operations compute.

Each check runs in a fresh interpreter forced to its variant (``FUSEDRNN_ISA``: the loader imports one
variant per process), and is skipped, with the reason, where the build has no such variant or the CPU
lacks one of its features.

The panel products sum every element over k in ascending order by one FMA chain in both variants, so
they agree to the bit. Eigen's packet math does not: the avx512 variant's exp (its sigmoid) and general
products are Eigen's AVX-512 ones, which round differently, so LSTM and GRU outputs and every gradient
through a general product differ from the avx2 variant's in the last bits. The bit-for-bit checks hence use
a one-layer ReLU RNN, whose outputs and initial-state gradient go through the panel products and exact
operations only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusedrnn import _cpu, _variants

VARIANTS = _variants.VARIANTS

TESTS = Path(__file__).resolve().parent

# (cell kind as test_kernels names it, T, N, I, H, layers, bidirectional, ragged lengths, given state,
# threads). Batch 1, 2 and 3 run the kernels' tiles of one to three rows with panels side by side, 16 and
# 64 the tall tiles; H = 37 and 70 leave a last panel short of 16 columns (every gate block too), I = 300
# and H = 300 sum over more than one block of k; two threads split each step's columns into slices.
REFERENCE_SHAPES = [
    ("batch1", 9, 1, 20, 37, 1, False, False, False, 1),
    ("batch1-threads2", 6, 1, 24, 70, 1, False, False, True, 2),
    ("batch2-H300", 4, 2, 16, 300, 1, False, False, False, 1),
    ("batch3-bi-ragged", 7, 3, 17, 40, 2, True, True, True, 1),
    ("batch16-I300", 5, 16, 300, 70, 1, False, False, False, 2),
    ("batch64-bi-ragged", 5, 64, 33, 64, 2, True, True, False, 1),
    ("batch64-threads2", 4, 64, 19, 37, 1, False, False, True, 2),
]
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "lstm-proj", "gru", "gru-lbr0")

_AGAINST_REFERENCE = r"""
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np
import fusedrnn as fr
from fusedrnn import _core
from conftest import _assert_close
from test_kernels import Problem, check_forward, make_layer, run_backward

assert _core.isa == {variant!r}, _core.isa
kind = {kind!r}
for name, T, N, I, H, layers, bi, ragged, state, threads in json.loads({shapes!r}):
    fr.set_num_threads(threads)
    rng = np.random.default_rng(len(name) * 1000 + N)
    layer = make_layer(kind, I, H, num_layers=layers, bidirectional=bi, seed=N + H)
    problem = Problem(layer, rng, T, N, ragged, state)
    try:
        y, final = layer(problem.x, problem.state, problem.lengths)
        check_forward(problem, y, final, _assert_close, problem.reference_forward())
        run_backward(problem, rng, _assert_close)
    except AssertionError as error:
        raise AssertionError(f"{{kind}} {{name}}: {{error}}") from None
    print("checked", kind, name)
"""

# One-layer ReLU RNNs: (name, T, N, I, H, bidirectional, ragged lengths, threads).
BIT_SHAPES = [
    ("batch1", 9, 1, 20, 37, False, False, 1),
    ("batch1-bi-threads2", 9, 1, 300, 70, True, False, 2),
    ("batch2-H300", 5, 2, 16, 300, False, False, 1),
    ("batch3-bi-ragged", 8, 3, 17, 40, True, True, 1),
    ("batch5-threads2", 6, 5, 33, 150, False, True, 2),
    ("batch16-I300", 6, 16, 300, 70, False, False, 1),
    ("batch64-bi-ragged", 5, 64, 33, 64, True, True, 2),
]

_DUMP_RELU_RNN = r"""
import json, sys
import numpy as np
import fusedrnn as fr
from fusedrnn import _core

assert _core.isa == {variant!r}, _core.isa
arrays = {{}}
for name, T, N, I, H, bi, ragged, threads in json.loads({shapes!r}):
    fr.set_num_threads(threads)
    rng = np.random.default_rng(N * 1000 + H)
    layer = fr.RNN(I, H, nonlinearity="relu", bidirectional=bi, seed=H)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=N) if ragged else None
    y, h_n = layer(x, lengths=lengths)
    tape = layer.record(x, lengths=lengths)
    grads = tape.backward(
        rng.standard_normal(y.shape).astype(np.float32), rng.standard_normal(h_n.shape).astype(np.float32)
    )
    arrays.update({{f"{{name}}/y": y, f"{{name}}/h_n": h_n, f"{{name}}/grad h0": grads.state}})
np.savez({path!r}, **arrays)
"""


def _unavailable(variant: str) -> str | None:
    """Why `variant` cannot run here, or None."""
    needs = dict(VARIANTS).get(variant)
    if needs is None:
        return f"this build has no {variant} variant (built: {', '.join(name for name, _ in VARIANTS)})"
    cpu = _cpu.features()
    missing = [feature for feature in needs if not cpu.get(feature)]
    if missing:
        return f"the {variant} kernels need {', '.join(missing)}, which this CPU lacks"
    return None


def _run(variant: str, script: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(os.environ, FUSEDRNN_ISA=variant),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_avx512_kernels_match_the_reference(kind: str) -> None:
    reason = _unavailable("avx512")
    if reason:
        pytest.skip(reason)
    script = _AGAINST_REFERENCE.format(
        tests=str(TESTS), variant="avx512", kind=kind, shapes=json.dumps(REFERENCE_SHAPES)
    )
    checked = _run("avx512", script).splitlines()
    assert checked == [f"checked {kind} {shape[0]}" for shape in REFERENCE_SHAPES]


def test_avx512_and_avx2_panel_products_give_the_same_bits(tmp_path: Path) -> None:
    for variant in ("avx512", "avx2"):
        reason = _unavailable(variant)
        if reason:
            pytest.skip(reason)
    dumps = {}
    for variant in ("avx512", "avx2"):
        path = tmp_path / f"{variant}.npz"
        _run(variant, _DUMP_RELU_RNN.format(variant=variant, shapes=json.dumps(BIT_SHAPES), path=str(path)))
        dumps[variant] = np.load(path)
    wide, narrow = dumps["avx512"], dumps["avx2"]
    assert sorted(wide.files) == sorted(narrow.files)
    assert len(wide.files) == 3 * len(BIT_SHAPES)
    for key in wide.files:
        assert wide[key].dtype == np.float32, key
        # Bits, not values: -0.0 and 0.0, or two NaNs, would compare equal as values.
        differing = int(np.count_nonzero(wide[key].view(np.uint32) != narrow[key].view(np.uint32)))
        assert differing == 0, f"{key}: {differing} of {wide[key].size} elements differ"
