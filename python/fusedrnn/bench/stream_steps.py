"""Per-step cost of running a model one time step at a time: ``stream.step`` and the cells, against
``torch.nn.LSTMCell`` / ``GRUCell`` called the same way (N=1, float32, same thread count).

For each cell kind (LSTM, GRU) it times, interleaved, in rounds:

- ``stream.step``: ``s = layer.stream(1)``; ``s.step(x_t)`` (x_t (1, I)), the state carried by the stream;
- ``cell``: fusedrnn's ``LSTMCell``/``GRUCell`` called as ``h, c = cell(x_t, (h, c))``;
- ``torch cell``: torch's cell called the same way under ``torch.no_grad()`` (when torch is installed);
- ``arithmetic``: one call of the same layer over ``steps`` steps, divided by ``steps``, with the input
  projection computed step by step (``fusedrnn._testing.tuning(projection_per_step=True)``) -- exactly
  the products and gates of a stream's step, x_t · W_ihᵀ included, without the per-call work: the floor a
  step can reach;
- ``sequence call``: the same call as a layer normally runs it, the input projection of all steps as one
  product before the loop, divided by ``steps`` -- what a step costs when the whole input is known in
  advance (a stream cannot know it: x_{t+1} may depend on y_t), shown for comparison;

and reports medians over the rounds in microseconds per step, ``overhead`` = stream.step - arithmetic and
``torch/stream`` = torch cell / stream.step. Every implementation's answer is checked against the
stream's first (torch's cell gets the same weights) before anything is timed.

Targets: an H=128 LSTM step costs at most 5 us more than its arithmetic and at least 5x less than
torch's cell (``python -m fusedrnn bench`` runs this and checks both). ``run`` returns the rows;
``main`` prints them (``python -m fusedrnn.bench.stream_steps``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

OVERHEAD_TARGET_US = 5.0
TORCH_RATIO_TARGET = 5.0
# The cell kind the targets are set for (its stream.step row is checked).
TARGET_KIND = "lstm"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _per_call_us(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def _contenders(kind: str, input_size: int, hidden: int, steps: int, seed: int) -> dict[str, Any]:
    """name -> (callable doing one step, per-call divisor, its first output) for one cell kind."""
    import fusedrnn as fr
    from fusedrnn._cells import cell_kind
    from fusedrnn._testing import tuning

    rng = np.random.default_rng(seed)
    spec = cell_kind(kind)
    # fusedrnn's layers and cells have torch.nn's names
    layer_cls, cell_cls = getattr(fr, spec.torch_layer), getattr(fr, spec.torch_cell)
    layer = layer_cls(input_size, hidden, seed=seed)
    cell = cell_cls(input_size, hidden, seed=seed)
    cell.load_state_dict({k[: -len("_l0")]: v for k, v in layer.state_dict().items()})
    x_t = rng.standard_normal((1, input_size)).astype(np.float32)
    x_long = rng.standard_normal((steps, 1, input_size)).astype(np.float32)
    x_long[0] = x_t

    out: dict[str, Any] = {}
    stream = layer.stream(1)
    first = stream.step(x_t).copy()
    stream.reset()
    out["stream.step"] = (lambda: stream.step(x_t), 1, first)

    if spec.has_cell_state:
        zeros = np.zeros((1, hidden), np.float32)
        state = [(zeros, zeros)]

        def cell_step() -> Any:
            state[0] = cell(x_t, state[0])
            return state[0][0]

        out["cell"] = (cell_step, 1, cell(x_t, (zeros, zeros))[0])
    else:
        hstate = [np.zeros((1, hidden), np.float32)]

        def cell_step() -> Any:
            hstate[0] = cell(x_t, hstate[0])
            return hstate[0]

        out["cell"] = (cell_step, 1, cell(x_t, np.zeros((1, hidden), np.float32)))

    def per_step_projection_call() -> Any:
        with tuning(projection_per_step=True):
            return layer(x_long)

    out["arithmetic"] = (per_step_projection_call, steps, per_step_projection_call()[0][0])
    out["sequence call"] = (lambda: layer(x_long), steps, layer(x_long)[0][0])

    torch = _torch()
    if torch is not None:
        tcell = getattr(torch.nn, spec.torch_cell)(input_size, hidden)
        with torch.no_grad():
            for name, value in cell.state_dict().items():
                getattr(tcell, name).copy_(torch.from_numpy(value))
        xt = torch.from_numpy(x_t)
        tz = torch.zeros(1, hidden)
        tstate: list[Any] = [(tz, tz) if spec.has_cell_state else tz]

        def torch_step() -> Any:
            with torch.no_grad():
                tstate[0] = tcell(xt, tstate[0])
            return tstate[0]

        with torch.no_grad():
            t_first = tcell(xt, (tz, tz) if spec.has_cell_state else tz)
        t_first = (t_first[0] if spec.has_cell_state else t_first).numpy()
        out["torch cell"] = (torch_step, 1, t_first)
    return out


def _check_first_steps(kind: str, contenders: dict[str, Any]) -> None:
    """Every contender's first step against the stream's; RuntimeError on a difference."""
    reference_answer = contenders["stream.step"][2]
    for name, (_, _, answer) in contenders.items():
        diff = float(np.max(np.abs(np.asarray(answer, np.float64) - reference_answer)))
        if not diff <= 1e-4:
            raise RuntimeError(f"{kind} {name}: its first step differs from stream.step's by {diff:.3g}")


def _time_contenders(contenders: dict[str, Any], rounds: int, calls: int) -> dict[str, list[float]]:
    """Microseconds per step of each contender, one sample per round, interleaved, after a warm-up."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn, divisor, _ in contenders.values():  # warm up
        for _ in range(max(1, calls // (10 * divisor))):
            fn()
    for _ in range(rounds):
        for name, (fn, divisor, _) in contenders.items():
            n = max(1, calls // divisor)
            times[name].append(_per_call_us(fn, n) / divisor)
    return times


def _kind_rows(
    kind: str, times: dict[str, list[float]], hidden: int, input_size: int, threads: int
) -> list[dict[str, Any]]:
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    rows = []
    for name, ts in times.items():
        row: dict[str, Any] = {
            "kind": kind,
            "impl": name,
            "H": hidden,
            "I": input_size,
            "N": 1,
            "threads": threads,
            "median_us": medians[name],
            "min_us": min(ts),
        }
        if name == "stream.step":
            row["overhead_us"] = medians[name] - medians["arithmetic"]
            if "torch cell" in medians:
                row["torch_ratio"] = medians["torch cell"] / medians[name]
        if name == "cell" and "torch cell" in medians:
            row["torch_ratio"] = medians["torch cell"] / medians[name]
        rows.append(row)
    return rows


def run(
    hidden: int = 128,
    input_size: int = 128,
    kinds: tuple[str, ...] = ("lstm", "gru"),
    threads: int = 1,
    rounds: int = 80,
    calls: int = 400,
    steps: int = 200,
    seed: int = 0,
    out: Any = None,
) -> list[dict[str, Any]]:
    """Time the contenders (see the module docstring) and print a table to ``out`` (default stdout).
    Returns one row per (kind, implementation): kind, impl, H, I, N, threads, median_us, min_us, and for
    stream.step also overhead_us and torch_ratio when measured. Raises RuntimeError if an answer differs."""
    import fusedrnn as fr

    out = sys.stdout if out is None else out
    previous = fr.get_num_threads()
    torch = _torch()
    torch_threads = torch.get_num_threads() if torch is not None else None
    fr.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    try:
        for kind in kinds:
            contenders = _contenders(kind, input_size, hidden, steps, seed)
            _check_first_steps(kind, contenders)
            times = _time_contenders(contenders, rounds, calls)
            rows += _kind_rows(kind, times, hidden, input_size, threads)
    finally:
        fr.set_num_threads(previous)
        if torch is not None:
            torch.set_num_threads(torch_threads)
    _print_table(rows, out)
    return rows


def _print_table(rows: list[dict[str, Any]], out: Any) -> None:
    if not rows:
        return
    r0 = rows[0]
    print(
        f"One step at N=1, H={r0['H']}, I={r0['I']}, float32, {r0['threads']} thread(s): "
        "medians, us per step",
        file=out,
    )
    header = ("cell", "impl", "median_us", "min_us", "overhead_us", "torch/this")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["kind"].upper(),
                r["impl"],
                f"{r['median_us']:.2f}",
                f"{r['min_us']:.2f}",
                f"{r['overhead_us']:.2f}" if "overhead_us" in r else "",
                f"{r['torch_ratio']:.1f}x" if "torch_ratio" in r else "",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print(
            "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))),
            file=out,
        )
    for r in rows:
        if r["impl"] != "stream.step" or r["kind"] != TARGET_KIND:
            continue
        verdicts = [
            f"overhead {r['overhead_us']:.2f} us "
            f"({'meets' if r['overhead_us'] <= OVERHEAD_TARGET_US else 'misses'} "
            f"<= {OVERHEAD_TARGET_US:g} us)"
        ]
        if "torch_ratio" in r:
            ok = r["torch_ratio"] >= TORCH_RATIO_TARGET
            verdicts.append(
                f"{r['torch_ratio']:.1f}x less than torch's cell "
                f"({'meets' if ok else 'misses'} >= {TORCH_RATIO_TARGET:g}x)"
            )
        print(f"LSTM stream.step: {'; '.join(verdicts)}", file=out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Per-step cost of stream.step and the cells vs torch's cells."
    )
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=80)
    args = parser.parse_args(argv)
    run(hidden=args.hidden, input_size=args.input, threads=args.threads, rounds=args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
