"""Command line: ``python -m fusedrnn <command>`` (also installed as ``fusedrnn``).

Commands:
  bench     time fusedrnn against its NumPy reference, PyTorch and ONNX Runtime (see fusedrnn.bench)
  gradflow  how the gradient of a loss on the last step fades back through time (see fusedrnn.analysis)
"""

from __future__ import annotations

import argparse
import os
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
        bench.run(
            threads=args.threads,
            quick=args.quick,
            repeat=args.repeat,
            json_path=args.json,
            plot_path=args.plot,
            memory=args.memory,
        )
    except bench.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_gradflow(args: argparse.Namespace) -> int:
    from fusedrnn import analysis

    try:
        analysis.run_cli(
            steps=args.steps,
            hidden_size=args.hidden,
            input_size=args.input,
            seed=args.seed,
            dtype=args.dtype,
            plot_path=args.plot,
        )
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _version() -> str:
    import fusedrnn

    return (
        f"fusedrnn {fusedrnn.__version__} (kernels: {fusedrnn._core.isa}, "
        f"{fusedrnn.get_num_threads()} threads)"
    )


def _program_name() -> str:
    """How the user started the command line: the installed script or ``python -m fusedrnn``."""
    started_as = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "fusedrnn" if started_as in ("fusedrnn", "fusedrnn.exe") else "python -m fusedrnn"


def build_parser(prog: str = "python -m fusedrnn") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="fusedrnn: fused RNN, LSTM and GRU kernels for the CPU."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=_version(),
        help="print fusedrnn's version, its kernels' instruction set and thread count",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench",
        help="time fusedrnn against NumPy, PyTorch and ONNX Runtime",
        description="Time fusedrnn against its NumPy reference, and against PyTorch and ONNX Runtime when "
        "they are installed, on standard LSTM and GRU shapes (float32, inference and training). "
        "Every anchor's answer is checked against fusedrnn's before it is timed; timing is "
        "interleaved and reports medians and ratio = anchor time / fusedrnn time.",
    )
    bench.add_argument(
        "--threads",
        type=_thread_counts,
        default=None,
        metavar="N[,M...]",
        help="thread counts to measure at (default: 1 and the number of usable cores)",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes and few rounds: a smoke test whose times mean nothing",
    )
    bench.add_argument(
        "--repeat",
        type=_positive,
        default=None,
        metavar="K",
        help="timed rounds per workload (default 20, or 3 with --quick)",
    )
    bench.add_argument("--json", default=None, metavar="FILE", help="also write every row to FILE as JSON")
    bench.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="also draw the ratios per workload and thread count, with the targets, into "
        "FILE.png (needs matplotlib)",
    )
    bench.add_argument(
        "--memory",
        action="store_true",
        help="also report fusedrnn's and PyTorch's peak memory per call, each measured in a fresh process",
    )
    bench.set_defaults(func=_cmd_bench)

    gradflow = commands.add_parser(
        "gradflow",
        help="how the gradient fades back through time in an RNN, LSTM and GRU",
        description="Put a loss on the last step of a vanilla RNN, an LSTM (forget-gate bias 0, +1, +2) and "
        "a GRU of the same size (PyTorch's default initialization) on the same random input, and "
        "print ||dL/dx_t|| and ||dL/dh_t|| at eleven steps from 0 to T-1; --plot draws them on a "
        "log scale (needs matplotlib).",
    )
    gradflow.add_argument(
        "--plot", default=None, metavar="FILE", help="also draw the curves into FILE (.png)"
    )
    gradflow.add_argument(
        "--steps", type=_positive, default=100, metavar="T", help="sequence length (default 100)"
    )
    gradflow.add_argument(
        "--hidden", type=_positive, default=64, metavar="H", help="hidden units (default 64)"
    )
    gradflow.add_argument(
        "--input", type=_positive, default=32, metavar="I", help="input features (default 32)"
    )
    gradflow.add_argument("--seed", type=int, default=0, help="seed of the weights and the input (default 0)")
    gradflow.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="compute dtype (default float32, where small gradients underflow)",
    )
    gradflow.set_defaults(func=_cmd_gradflow)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(_program_name()).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
