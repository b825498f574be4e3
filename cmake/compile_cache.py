"""A compiler launcher that keeps each object file of the build, so that a rebuild recompiles only what
changed.

    python compile_cache.py CACHE_DIR -- COMPILER ARGS... -o OBJECT ... -MF DEPFILE ...

scikit-build-core deletes the build directory's CMakeFiles (where CMake puts every object file) whenever
pip builds in a new isolated environment, which pip does for every ``pip install``; without this, the
README's second command would recompile everything. An object is reused when the command line is the
same and every file the compiler read for it (its dependency file lists them) has the same content; it is
checked by content, not time, since a new environment's headers are new files with the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _option(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg == flag:
            return args[i + 1]
    return None


def _depfile_paths(text: str) -> list[str]:
    """The prerequisites of a Makefile-style dependency file (``target: a b \\`` lines)."""
    _, _, body = text.partition(":")
    words = body.replace("\\\n", " ").split()
    paths, pending = [], ""
    for word in words:  # a path with spaces is written with backslash-escaped spaces
        if word.endswith("\\"):
            pending += word[:-1] + " "
            continue
        paths.append(pending + word)
        pending = ""
    return paths


def _digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _entry_dir(cache: Path, obj: str) -> Path:
    return cache / hashlib.sha256(os.path.abspath(obj).encode()).hexdigest()[:32]


def _reuse(entry: Path, command: list, obj: str, depfile: str | None) -> bool:
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("command") != command:
        return False
    if any(_digest(path) != digest for path, digest in manifest.get("inputs", {}).items()):
        return False
    try:
        shutil.copyfile(entry / "object", obj)
        if depfile:
            shutil.copyfile(entry / "depfile", depfile)
    except OSError:
        return False
    return True


def _store(entry: Path, command: list, obj: str, depfile: str) -> None:
    inputs = {path: _digest(path) for path in _depfile_paths(Path(depfile).read_text())}
    if None in inputs.values():
        return  # an input is already gone: nothing safe to keep
    entry.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(obj, entry / "object")
    shutil.copyfile(depfile, entry / "depfile")
    tmp = entry / "manifest.json.tmp"
    tmp.write_text(json.dumps({"command": command, "inputs": inputs}))
    os.replace(tmp, entry / "manifest.json")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: compile_cache.py CACHE_DIR -- COMPILER ARGS...", file=sys.stderr)
        return 2
    cache, command = Path(argv[0]), argv[2:]
    obj, depfile = _option(command, "-o"), _option(command, "-MF")
    if obj is None or "-c" not in command:  # not a compilation to an object: just run it
        return subprocess.call(command)
    entry = _entry_dir(cache, obj)
    compiler = shutil.which(command[0])
    key = [_digest(compiler) if compiler else None, *command]  # another compiler: another object
    if depfile and _reuse(entry, key, obj, depfile):
        return 0
    status = subprocess.call(command)
    if status == 0 and depfile and os.path.exists(depfile):
        try:
            _store(entry, key, obj, depfile)
        except OSError:
            pass  # a cache that cannot be written only costs a recompilation next time
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
