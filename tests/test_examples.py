"""The examples in ``examples/``, each run in a shortened form that must still reach its quality bar."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    path = EXAMPLES / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    if str(EXAMPLES) not in sys.path:  # the examples import their shared progress bar, as scripts do
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"fusedrnn_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_char_lm_reaches_its_loss_and_samples_text():
    char_lm = load("char_lm")
    result = char_lm.main(["--steps", "120", "--sample-length", "80", "--quiet"])
    assert result["loss"] < 1.5  # nats per character over the whole text
    text = char_lm.zen_of_python()
    assert result["sample"].startswith("Beautiful") and len(result["sample"]) == len("Beautiful") + 80
    assert set(result["sample"]) <= set(text)


def test_classify_gru_reaches_95_percent_and_the_rnn_does_not():
    classify = load("classify")
    result = classify.main(["--steps", "300", "--train-size", "4000", "--test-size", "1000", "--quiet"])
    assert result["gru"] >= 0.95
    assert result["rnn"] <= result["gru"] - 0.15


def test_tagging_reaches_95_percent_per_word():
    tagging = load("tagging")
    result = tagging.main(["--steps", "150", "--train-size", "3000", "--test-size", "1000", "--quiet"])
    assert result["accuracy"] >= 0.95
    assert result["accuracy"] > result["baseline"] + 0.05  # it uses the context


def test_examples_run_as_scripts_with_help():
    import subprocess

    for name in ("char_lm", "classify", "tagging"):
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "--steps" in out.stdout


@pytest.mark.slow
def test_dask_batch_matches_one_process_with_one_thread_per_worker():
    """The Dask example as a script (its workers are processes, which import it): it checks its answer
    and the workers' thread count itself, and exits 0; its summary says what it found."""
    import os
    import subprocess

    pytest.importorskip("dask.bag")
    pytest.importorskip("dask.distributed")
    path = EXAMPLES / "dask_batch.py"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    # A thread count set here would reach the workers and win over Dask's OMP_NUM_THREADS=1.
    env = {k: v for k, v in os.environ.items() if k not in ("FUSEDRNN_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, str(path), "--sequences", "300"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert lines["sequences"].startswith("300 of ")
    assert lines["workers"].startswith("2 processes, model loaded once in each")
    assert lines["threads per worker"].startswith("1 ")
    difference = float(lines["max difference from the single-process answer"].split()[0])
    assert difference <= 1e-5


def test_regularize_trains_every_variant_and_each_option_changes_the_result():
    import math

    regularize = load("regularize")
    result = regularize.main(["--steps", "100", "--hidden", "64", "--eval-every", "50", "--quiet"])
    text = "\n".join(regularize.unicode_names())
    uniform = math.log(len(set(text)))  # a model that has learned nothing: every character equally likely
    assert result["uniform"] == pytest.approx(uniform)
    variants = result["variants"]
    assert list(variants) == ["plain", "layer_norm", "zoneout", "recurrent_dropout", "layer_norm+zoneout"]
    for name, numbers in variants.items():
        # 1 nat below uniform is also below what the characters' frequencies alone give (about 3.0).
        for key in ("valid", "train", "best_valid"):
            assert math.isfinite(numbers[key]), (name, key)
            assert numbers[key] < uniform - 1.0, (name, key, numbers[key])
        assert numbers["best_valid"] <= numbers["valid"]
        assert numbers["best_step"] in (50, 100)
        assert numbers["seconds"] > 0

    # Same seed, windows and steps: an option that was ignored would reproduce the plain LSTM's losses.
    def differ(a, b):
        return max(abs(variants[a][key] - variants[b][key]) for key in ("valid", "train")) > 1e-4

    for name in ("layer_norm", "zoneout", "recurrent_dropout", "layer_norm+zoneout"):
        assert differ(name, "plain"), name
    assert differ("layer_norm+zoneout", "layer_norm")
