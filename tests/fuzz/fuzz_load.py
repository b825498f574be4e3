"""Coverage-guided fuzzing of fusedrnn.load and fusedrnn.from_onnx with atheris, by hand, for longer runs
than tests/test_fuzz_files.py gives CI (pytest does not collect this file: its name is not test_*):

    pip install atheris hypothesis
    python tests/fuzz/fuzz_load.py -max_total_time=600 [libFuzzer options] [corpus folder]

An input's first byte chooses: bit 0 the reader (0 load, 1 from_onnx), bit 1 (load) whether the file's
checksum is recomputed first, so that mutations reach past it. The rest is the file. The seeds are the
valid files of test_fuzz_files. The checks are test_fuzz_files': documented errors only, and a model that
loads must run; anything else is a crash that libFuzzer reports with the input that caused it.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

with atheris.instrument_imports():
    import fusedrnn  # noqa: F401
    import fusedrnn.interop.model_file  # noqa: F401
    import fusedrnn.interop.onnx_io  # noqa: F401

from test_fuzz_files import check_from_onnx, check_load, model_files, onnx_files, reseal  # noqa: E402


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 1:
        check_from_onnx(body)
    else:
        check_load(reseal(body) if mode & 2 else body)


def main() -> None:
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus folder given: start from the seeds
        corpus = tempfile.mkdtemp(prefix="fusedrnn-fuzz-")
        seeds = [b"\x00" + f for f in model_files()] + [b"\x02" + f for f in model_files()]
        seeds += [b"\x01" + f for f in onnx_files()]
        for k, seed in enumerate(seeds):
            with open(os.path.join(corpus, f"seed{k}"), "wb") as f:
                f.write(seed)
        args.append(corpus)
        print(f"fuzz_load: corpus in {corpus}", file=sys.stderr)
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
