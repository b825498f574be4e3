"""Command line: ``python -m fusedrnn <command>`` (also installed as ``fusedrnn``).

Commands:
  bench     time fusedrnn against its NumPy reference, PyTorch and ONNX Runtime (see fusedrnn.bench)
  gradflow  how the gradient of a loss on the last step fades back through time (see fusedrnn.analysis)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


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


def _lengths(text: str) -> tuple[int, ...] | str:
    if text.strip() == "random":
        return "random"
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected 'random' or positive integers separated by commas, got {text!r}"
        )
    return values


# The workload's shape options: the command line's spelling -> Workload's field, and the default of each
# (the first default workload: LSTM inference T=100 N=1 I=128 H=256).
_SHAPE_OPTIONS = {
    "--cell": ("cell", "lstm"),
    "--hidden-size": ("H", 256),
    "--input-size": ("I", 128),
    "--batch": ("N", 1),
    "--seq-len": ("T", 100),
    "--num-layers": ("layers", 1),
    "--bidirectional": ("bidirectional", False),
    "--proj-size": ("proj_size", 0),
    "--dtype": ("dtype", "float32"),
    "--training": ("mode", False),
    "--nonlinearity": ("nonlinearity", None),
    "--lengths": ("lengths", None),
}


def _dest(option: str) -> str:
    return option[2:].replace("-", "_")


def _bench_workload(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    """The user's workload from the shape options (None when none is given), with the targets of the
    default workload it equals; a value out of range is a usage error naming its option."""
    from fusedrnn.bench import workloads as wl

    given = {opt: getattr(args, _dest(opt)) for opt in _SHAPE_OPTIONS}
    if all(v is None for v in given.values()):
        return None
    value = {
        opt: default if given[opt] is None else given[opt] for opt, (_, default) in _SHAPE_OPTIONS.items()
    }
    cell = value["--cell"]
    if value["--nonlinearity"] is not None and cell != "rnn":
        parser.error(f"argument --nonlinearity: only --cell rnn has one, got --cell {cell}")
    if cell == "rnn":
        cell = "rnn_" + (value["--nonlinearity"] or "tanh")
    lengths = value["--lengths"]
    if lengths == "random":  # seeded, so that a run can be repeated
        import numpy as np

        rng = np.random.default_rng(0)
        lengths = tuple(int(n) for n in rng.integers(1, value["--seq-len"] + 1, size=value["--batch"]))
    fields = {name: value[opt] for opt, (name, _) in _SHAPE_OPTIONS.items() if name not in ("cell", "mode")}
    del fields["nonlinearity"]
    fields["lengths"] = lengths
    try:
        workload = wl.Workload(cell=cell, mode="training" if value["--training"] else "inference", **fields)
    except wl.WorkloadError as exc:
        option = next(opt for opt, (name, _) in _SHAPE_OPTIONS.items() if name == exc.field)
        parser.error(f"argument {option}: {exc.detail}")
    return wl.with_targets(workload)


def _cmd_bench(args: argparse.Namespace) -> int:
    from fusedrnn import bench

    workload = _bench_workload(args, args.parser)
    show_progress = not args.no_progress and args.json != "-"
    try:
        bench.run(
            threads=args.threads,
            quick=args.quick,
            repeat=args.repeat,
            json_path=args.json,
            plot_path=args.plot,
            memory=args.memory,
            workloads=None if workload is None else (workload,),
            verbose=args.verbose,
            progress=sys.stderr if show_progress else None,
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


def _add_shape_options(bench: argparse.ArgumentParser) -> None:
    shape = bench.add_argument_group(
        "your own workload",
        "Any of these times one workload (at each --threads count) in place of the standard ones; the "
        "others default to LSTM inference, float32, T=100, N=1, I=128, H=256, one layer. An anchor "
        "that cannot run it (ONNX Runtime: training, float64, projections) is skipped with a note.",
    )
    shape.add_argument("--cell", choices=["lstm", "gru", "rnn"], default=None, help="the cell (default lstm)")
    shape.add_argument(
        "--nonlinearity", choices=["tanh", "relu"], default=None, help="the rnn cell's (default tanh)"
    )
    sizes = (
        ("--hidden-size", "H", "hidden units (default 256)"),
        ("--input-size", "I", "input features (default 128)"),
        ("--batch", "N", "sequences in the batch (default 1)"),
        ("--seq-len", "T", "time steps (default 100)"),
        ("--num-layers", "L", "stacked layers (default 1)"),
    )
    for option, metavar, text in sizes:
        shape.add_argument(option, type=_positive, default=None, metavar=metavar, help=text)
    shape.add_argument(
        "--bidirectional", action="store_true", default=None, help="both directions in every layer"
    )
    shape.add_argument(
        "--proj-size",
        type=_positive,
        default=None,
        metavar="P",
        help="LSTM only: project h to P < H units, as torch.nn.LSTM(proj_size=P)",
    )
    shape.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="weights, input and compute (default float32)",
    )
    shape.add_argument(
        "--training",
        action="store_true",
        default=None,
        help="time forward and backward (the input and weight gradients) in place of inference",
    )
    shape.add_argument(
        "--lengths",
        type=_lengths,
        default=None,
        metavar="L1,L2,...",
        help="a ragged batch: one length per sequence (1..T; PyTorch's packed-sequence semantics), or "
        "'random' (seeded)",
    )


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
        "they are installed, on standard LSTM, GRU and RNN shapes (float32, inference and training), or "
        "on one workload of your own given by the shape options. Every anchor's answer is checked "
        "against fusedrnn's before it is timed; timing is interleaved and reports the median (p50) and "
        "90th percentile (p90) of each, and ratio = anchor p50 / fusedrnn p50.",
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
        help="few rounds, and tiny shapes in place of the standard workloads: a smoke test whose times "
        "mean nothing",
    )
    bench.add_argument(
        "--repeat",
        type=_positive,
        default=None,
        metavar="K",
        help="timed rounds per workload (default 20, or 3 with --quick)",
    )
    bench.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write every row to FILE as JSON ('-': the JSON alone on stdout, no report or progress)",
    )
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
    bench.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="the detailed report: per-row detail, GFLOP/s against the matmul rate, batch-1 step time "
        "against the weight read, scaling, first calls, one step at a time, and every note",
    )
    bench.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress line on stderr (it is shown on a terminal, and every 30 s elsewhere)",
    )
    _add_shape_options(bench)
    bench.set_defaults(func=_cmd_bench, parser=bench)

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
