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
