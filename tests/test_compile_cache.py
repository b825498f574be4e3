"""The build's compiler launcher (cmake/compile_cache.py): an object is reused only when the command and
the content of every input are unchanged, and the compiler's failures pass through."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).resolve().parents[1] / "cmake" / "compile_cache.py"

# A stand-in compiler: "compiles" SOURCE by concatenating it and the header it names into the object,
# writes a Makefile-style dependency file, and logs each run.
FAKE_COMPILER = textwrap.dedent(
    """\
    #!{python}
    import sys
    args = sys.argv[1:]
    out, dep, src = args[args.index("-o") + 1], args[args.index("-MF") + 1], args[args.index("-c") + 1]
    with open({log!r}, "a") as log:
        log.write(src + "\\n")
    source = open(src).read()
    if "error" in source:
        sys.exit(3)
    header = source.split()[0]
    with open(out, "w") as f:
        f.write(" ".join(args) + "|" + source + "|" + open(header).read())
    with open(dep, "w") as f:
        f.write(out + ": " + src + " \\\\\\n  " + header + "\\n")
    """
)


@pytest.fixture
def build(tmp_path: Path):
    log = tmp_path / "compiler.log"
    compiler = tmp_path / "fakecc"
    compiler.write_text(FAKE_COMPILER.format(python=sys.executable, log=str(log)))
    compiler.chmod(0o755)
    header = tmp_path / "header.h"
    header.write_text("int x = 1;")
    source = tmp_path / "unit.cpp"
    source.write_text(f"{header}\nint main() {{}}")

    def compile(*extra: str) -> int:
        obj, dep = tmp_path / "unit.o", tmp_path / "unit.o.d"
        command = [str(compiler), *extra, "-MD", "-MF", str(dep), "-o", str(obj), "-c", str(source)]
        return subprocess.call([sys.executable, str(LAUNCHER), str(tmp_path / "cache"), "--", *command])

    def runs() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    return compile, runs, header, source, tmp_path / "unit.o", tmp_path / "unit.o.d"


def test_an_unchanged_unit_is_not_recompiled(build) -> None:
    compile, runs, _, _, obj, dep = build
    assert compile("-O2") == 0 and runs() == 1
    first = obj.read_text()
    obj.unlink()
    dep.unlink()  # as scikit-build-core's clearing of CMakeFiles leaves it
    assert compile("-O2") == 0
    assert runs() == 1, "the object came from the cache"
    assert obj.read_text() == first
    assert dep.exists(), "the dependency file is restored for ninja"


def test_a_touched_but_unchanged_header_reuses_the_object(build) -> None:
    compile, runs, header, _, obj, _ = build
    compile()
    header.write_text(header.read_text())  # a new file with the same bytes, as in a new environment
    os.utime(header, (1e9 + 10, 2e9))
    obj.unlink()
    compile()
    assert runs() == 1


def test_a_changed_header_source_or_command_recompiles(build) -> None:
    compile, runs, header, source, obj, _ = build
    compile()
    header.write_text("int x = 2;")
    compile()
    assert runs() == 2 and "int x = 2;" in obj.read_text()
    source.write_text(source.read_text() + "\n// changed")
    compile()
    assert runs() == 3
    compile("-DNEW")
    assert runs() == 4 and "-DNEW" in obj.read_text()
    compile("-DNEW")
    assert runs() == 4


def test_a_failing_compilation_fails_and_is_not_kept(build) -> None:
    compile, runs, header, source, obj, _ = build
    source.write_text(f"{header}\nerror here")
    assert compile() == 3
    assert compile() == 3
    assert runs() == 2, "a failure is never served from the cache"


def test_usage_error() -> None:
    result = subprocess.run([sys.executable, str(LAUNCHER), "cache-only"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr
