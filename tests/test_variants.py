"""Every compiled kernel variant against the reference, each in a fresh interpreter that forces it.

The variants come from fusedrnn._variants (written by the build); one the CPU does not support is
skipped, and says so.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from fusedrnn import _core, _cpu, _variants

VARIANTS = _variants.VARIANTS

_CHECK = r"""
import numpy as np
import fusedrnn as fr
from fusedrnn import _core, reference

assert _core.isa == {variant!r}, _core.isa
rng = np.random.default_rng(0)
for cell in (fr.LSTM, fr.GRU):
    layer = cell(8, 40, num_layers=2, bidirectional=True, seed=1)
    x = rng.standard_normal((5, 3, 8)).astype(np.float32)
    y, _ = layer(x)
    params = {{k: v.astype(np.float64) for k, v in layer.state_dict().items()}}
    y_ref = reference.forward(layer.config, params, x.astype(np.float64))[0]
    np.testing.assert_allclose(y, y_ref, rtol=2e-4, atol=2e-5)
print("ok", _core.isa)
"""


def test_the_loader_knows_every_compiled_variant() -> None:
    names = [name for name, _ in VARIANTS]
    assert names[-1] == "baseline" or "baseline" not in names  # the fallback, when built, comes last
    assert _core.isa in names


@pytest.mark.parametrize("variant, features", VARIANTS, ids=[name for name, _ in VARIANTS])
def test_variant_matches_the_reference(variant: str, features: tuple[str, ...]) -> None:
    cpu = _cpu.features()
    missing = [f for f in features if not cpu.get(f)]
    if missing:
        pytest.skip(f"the {variant} kernels need {', '.join(missing)}, which this CPU lacks")
    env = dict(os.environ, FUSEDRNN_ISA=variant)
    out = subprocess.run(
        [sys.executable, "-c", _CHECK.format(variant=variant)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", variant]


def test_every_feature_a_variant_needs_is_one_the_cpu_module_reports() -> None:
    """A feature named in CMakeLists.txt that _cpu does not report keeps its variant from ever loading."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"the CPU features are detected on x86-64 only, not on {platform.machine()}")
    reported = _cpu.features()
    for variant, features in VARIANTS:
        unknown = [f for f in features if f not in reported]
        assert not unknown, f"{variant} needs {unknown}, which fusedrnn._cpu does not report"


def test_the_loader_picks_the_best_variant_the_cpu_supports() -> None:
    cpu = _cpu.features()
    best = next(name for name, features in VARIANTS if all(cpu.get(f) for f in features))
    env = {key: value for key, value in os.environ.items() if key != "FUSEDRNN_ISA"}
    out = subprocess.run(
        [sys.executable, "-c", "from fusedrnn import _core; print(_core.isa)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [best]
