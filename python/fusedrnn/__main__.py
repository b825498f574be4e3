"""Command line: ``python -m fusedrnn <command>`` (also installed as ``fusedrnn``).

Commands:
  bench   time fusedrnn against its NumPy reference, PyTorch and ONNX Runtime (see fusedrnn.bench)
"""

from __future__ import annotations

import argparse
import sys


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return list(dict.fromkeys(counts))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _cmd_bench(args: argparse.Namespace) -> int:
    from fusedrnn import bench

    try:
        bench.run(threads=args.threads, quick=args.quick, repeat=args.repeat, json_path=args.json)
    except bench.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fusedrnn",
                                     description="fusedrnn: fused RNN, LSTM and GRU kernels for the CPU.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench", help="time fusedrnn against NumPy, PyTorch and ONNX Runtime",
        description="Time fusedrnn against its NumPy reference, and against PyTorch and ONNX Runtime when "
                    "they are installed, on standard LSTM and GRU shapes (float32, inference and training). "
                    "Every anchor's answer is checked against fusedrnn's before it is timed; timing is "
                    "interleaved and reports medians and ratio = anchor time / fusedrnn time.")
    bench.add_argument("--threads", type=_thread_counts, default=None, metavar="N[,M...]",
                       help="thread counts to measure at (default: 1 and the number of usable cores)")
    bench.add_argument("--quick", action="store_true",
                       help="tiny shapes and few rounds: a smoke test whose times mean nothing")
    bench.add_argument("--repeat", type=_positive, default=None, metavar="K",
                       help="timed rounds per workload (default 20, or 3 with --quick)")
    bench.add_argument("--json", default=None, metavar="FILE", help="also write every row to FILE as JSON")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
