"""The command line names itself as it was started and tells its version; the license ships."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

import fusedrnn as fr


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=True).stdout


def test_version() -> None:
    out = _run(sys.executable, "-m", "fusedrnn", "--version")
    threads = fr._threads.default_num_threads()  # a fresh process's count
    assert out.strip() == f"fusedrnn {fr.__version__} (kernels: {fr._core.isa}, {threads} threads)"


def test_help_names_python_dash_m() -> None:
    assert _run(sys.executable, "-m", "fusedrnn", "--help").startswith("usage: python -m fusedrnn ")


def test_help_of_the_installed_script_names_the_script() -> None:
    script = shutil.which("fusedrnn", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the fusedrnn script is not installed beside this interpreter")
    assert _run(script, "--help").startswith("usage: fusedrnn ")


def test_the_license_is_in_the_installed_distribution() -> None:
    files = metadata.files("fusedrnn") or []
    licenses = [f for f in files if f.name == "LICENSE"]
    assert licenses, "no LICENSE among the distribution's files"
    assert "MIT License" in licenses[0].read_text()


# `python -m fusedrnn bench` with a workload of the user's: a bad value is a usage error (exit 2) that
# names its option, before anything is timed.
BAD_SHAPES = {
    "hidden-0": (["--hidden-size", "0"], "argument --hidden-size: expected a positive integer, got '0'"),
    "batch-word": (["--batch", "four"], "argument --batch: expected a positive integer, got 'four'"),
    "seq-len-negative": (["--seq-len", "-3"], "argument --seq-len: expected a positive integer, got '-3'"),
    "layers-0": (["--num-layers", "0"], "argument --num-layers: expected a positive integer, got '0'"),
    "input-0": (["--input-size", "0"], "argument --input-size: expected a positive integer, got '0'"),
    "cell": (["--cell", "transformer"], "argument --cell: invalid choice: 'transformer'"),
    "dtype": (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    "nonlinearity-choice": (
        ["--cell", "rnn", "--nonlinearity", "gelu"],
        "argument --nonlinearity: invalid choice",
    ),
    "nonlinearity-lstm": (
        ["--nonlinearity", "relu"],
        "argument --nonlinearity: only --cell rnn has one, got --cell lstm",
    ),
    "proj-gru": (
        ["--cell", "gru", "--proj-size", "8"],
        "argument --proj-size: only an LSTM has a projection, got cell 'gru'",
    ),
    "proj-too-big": (
        ["--hidden-size", "32", "--proj-size", "32"],
        "argument --proj-size: expected a size below the hidden size 32, got 32",
    ),
    "lengths-count": (
        ["--batch", "3", "--lengths", "4,2"],
        "argument --lengths: expected 3 values, one per sequence of the batch, got 2",
    ),
    "lengths-too-long": (
        ["--seq-len", "5", "--lengths", "6"],
        "argument --lengths: expected lengths from 1 to the sequence length 5, got (6,)",
    ),
    "lengths-zero": (["--lengths", "0"], "argument --lengths: expected 'random' or positive integers"),
}


@pytest.mark.parametrize("argv, message", BAD_SHAPES.values(), ids=BAD_SHAPES.keys())
def test_bench_rejects_a_bad_workload_naming_the_option(argv, message, capsys) -> None:
    from fusedrnn.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["bench", "--threads", "1", *argv])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.startswith("usage: ")
    assert captured.out == ""  # nothing ran


def test_bench_help_lists_the_workload_options() -> None:
    text = _run(sys.executable, "-m", "fusedrnn", "bench", "--help")
    for option in (
        "--cell",
        "--nonlinearity",
        "--hidden-size",
        "--input-size",
        "--batch",
        "--seq-len",
        "--num-layers",
        "--bidirectional",
        "--proj-size",
        "--dtype",
        "--training",
        "--lengths",
        "--verbose",
        "--no-progress",
    ):
        assert option in text
