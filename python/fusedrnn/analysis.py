"""How gradients flow back through time: why LSTM and GRU were invented.

``gradient_flow(layer, x)`` puts a loss on the last step of the output, ``L = sum(y_{T-1})`` (summed over
the batch too), and measures for every step t

- ``input[t]``  = ||dL/dx_t||, the gradient reaching the input at step t, and
- ``hidden[t]`` = ||dL/dh_t||, the gradient reaching the state after step t (every layer's h),
- ``cell[t]``   = ||dL/dc_t|| for an LSTM (every layer's c),

each the L2 norm over the features, averaged over the sequences of the batch. In a vanilla RNN the
gradient is multiplied at every step by ``diag(act'(a_t)) W_hh``, whose norm is below 1 with the usual
initialization, so it shrinks geometrically with the distance to the loss and, in float32, underflows to
exactly zero within a hundred steps. An LSTM's cell state passes the gradient on multiplied only by the
forget gate f_t; starting f near 1 (``fr.LSTM(..., forget_bias=1 or 2)``) keeps it alive much longer.

``python -m fusedrnn gradflow [--plot out.png]`` compares a vanilla RNN, an LSTM (also with forget biases
+1 and +2) and a GRU of the same size on the same input (``compare``, ``format_table``, ``plot``).

Everything comes from the layers' tapes: ``input`` from one ``record``/``backward``; ``hidden`` from one more
batched ``record`` in which sequence t starts from the state after step t (taken from a stream) and runs
the remaining steps, so that its gradient with respect to its initial state is dL/dh_t.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _validation as v

__all__ = ["GradientFlow", "gradient_flow", "compare", "format_table", "plot", "COMPARISON"]


@dataclass
class GradientFlow:
    r"""Per-step gradient norms for the loss :math:`L = \sum y_{T-1}` on the last step, what
    :func:`gradient_flow` returns. Each value is the L2 norm over the features, averaged over the batch.

    Parameters
    ----------
    input : ndarray (T,)
        :math:`\|\partial L / \partial x_t\|` for t = 0 .. T-1.
    hidden : ndarray (T,) or None
        :math:`\|\partial L / \partial h_t\|`, h_t every layer's state after step t; None for a
        bidirectional layer, whose state has no single direction in time.
    cell : ndarray (T,) or None
        :math:`\|\partial L / \partial c_t\|` for a one-directional LSTM, else None.
    """

    input: np.ndarray
    hidden: np.ndarray | None
    cell: np.ndarray | None

    @property
    def steps(self) -> int:
        """T, the number of steps measured."""
        return int(self.input.shape[0])


def _mean_norm(g: np.ndarray, batch_axis: int) -> np.ndarray:
    """L2 norm over the last axis (and every axis but time and batch), averaged over the batch axis."""
    g = np.asarray(g, np.float64)
    g = np.moveaxis(g, batch_axis, -2)  # (..., N, F)
    lead = g.shape[:-2]
    norms = np.sqrt(np.square(g).sum(axis=-1))  # (..., N)
    return norms.reshape(lead + (g.shape[-2],)).mean(axis=-1)


def gradient_flow(layer: Any, x: Any, state: Any = None) -> GradientFlow:
    r"""The gradient norms of :math:`L = \sum y_{T-1}` (the loss on the last step's output, summed over
    the batch too) at every step t: :math:`\|\partial L / \partial x_t\|`,
    :math:`\|\partial L / \partial h_t\|` and for an LSTM :math:`\|\partial L / \partial c_t\|`.

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        A fusedrnn layer without dropout (dropout would make the loss random).
    x : array_like
        The layer's input, in its layout: (T, N, I), (N, T, I) with batch_first, or (T, I).
    state : optional
        The initial state, as the layer's call accepts it (None: zeros).

    Returns
    -------
    GradientFlow
        One value per step t = 0 .. T-1 in each array.
    """
    from .layers import RNNBase

    if not isinstance(layer, RNNBase):
        raise TypeError(f"layer must be a fusedrnn RNN, LSTM or GRU, got {v.describe(layer)}")
    if layer.dropout > 0 and layer.num_layers > 1:
        raise ValueError(
            f"gradient_flow needs a deterministic layer, got dropout={layer.dropout}: measure a copy made "
            "without dropout (same arguments with dropout=0, then load_state_dict(layer.state_dict()))"
        )
    x_tm, h0, c0, _, layout = layer._prepare(x, state, None, "state")
    steps, batch = layout.steps, layout.batch
    config = layer.config

    def to_layer(arr: np.ndarray) -> np.ndarray:  # time-major (T, N, F) -> the layer's batched layout
        return np.ascontiguousarray(arr.transpose(1, 0, 2)) if layer.batch_first else arr

    start = None if h0 is None else ((h0, c0) if layer._has_cell_state else h0)
    if start is None and layer._has_cell_state and c0 is not None:
        start = (None, c0)
    tape = layer.record(to_layer(x_tm), start)
    gy = np.zeros(tape.output.shape, layer.dtype)
    if layer.batch_first:
        gy[:, -1] = 1
    else:
        gy[-1] = 1
    g_in = tape.backward(gy).input
    g_in_tm = g_in.transpose(1, 0, 2) if layer.batch_first else g_in
    input_norms = _mean_norm(g_in_tm, 1)
    if config.bidirectional:
        return GradientFlow(input_norms, None, None)

    # The state after every step t, from a stream (the same numbers as the call).
    s = layer.stream(batch)
    if start is not None:
        s.reset(start)
    lead = config.num_layers
    h_after = np.zeros((steps, lead, batch, config.output_size), layer.dtype)
    c_after = (
        np.zeros((steps, lead, batch, config.hidden_size), layer.dtype) if layer._has_cell_state else None
    )
    for t in range(steps):
        s.step(x_tm[t])
        st = s.state
        if c_after is not None:
            h_after[t], c_after[t] = st
        else:
            h_after[t] = st

    # dL/d(state after the last step): y_{T-1} is the top layer's h (with residual connections, plus
    # every lower layer's h, which reaches it through the skips).
    hidden = np.zeros(steps)
    cell = np.zeros(steps) if c_after is not None else None
    touched = lead if config.residual else 1
    hidden[-1] = math.sqrt(touched * config.output_size)
    if steps > 1:
        # Sequence (t, n), t < T-1: starts from the state after step t and reads x[t+1:, n].
        count = (steps - 1) * batch
        xs = np.zeros((steps - 1, count, config.input_size), layer.dtype)
        lengths = np.empty(count, np.int64)
        h_start = np.empty((lead, count, config.output_size), layer.dtype)
        c_start = np.empty((lead, count, config.hidden_size), layer.dtype) if c_after is not None else None
        for t in range(steps - 1):
            cols = slice(t * batch, (t + 1) * batch)
            xs[: steps - 1 - t, cols] = x_tm[t + 1 :]
            lengths[cols] = steps - 1 - t
            h_start[:, cols] = h_after[t]
            if c_start is not None:
                c_start[:, cols] = c_after[t]
        cont_state = (h_start, c_start) if c_start is not None else h_start
        cont = layer.record(to_layer(xs), cont_state, lengths=lengths)
        gys = np.zeros(cont.output.shape, layer.dtype)
        last = gys.transpose(1, 0, 2) if layer.batch_first else gys  # time-major view
        last[lengths - 1, np.arange(count)] = 1  # the loss on each sequence's last (true) step
        g_state = cont.backward(gys).state
        gh = g_state[0] if c_start is not None else g_state
        # (L, (T-1)*N, F) -> (T-1, N, L*F): one vector per step and sequence holding every layer's part
        per_step = gh.reshape(lead, steps - 1, batch, -1).transpose(1, 2, 0, 3).reshape(steps - 1, batch, -1)
        hidden[:-1] = _mean_norm(per_step, 1)
        if cell is not None:
            gc = g_state[1]
            per_step = (
                gc.reshape(lead, steps - 1, batch, -1).transpose(1, 2, 0, 3).reshape(steps - 1, batch, -1)
            )
            cell[:-1] = _mean_norm(per_step, 1)
    return GradientFlow(input_norms, hidden, cell)


# --------------------------------------------------------------------------------------------------
# the standard comparison

#: The models :func:`compare` measures, in its order: the keys of its result.
COMPARISON = ("RNN (tanh)", "LSTM", "LSTM forget+1", "LSTM forget+2", "GRU")


def compare(
    steps: int = 100,
    input_size: int = 32,
    hidden_size: int = 64,
    batch: int = 1,
    seed: int = 0,
    dtype: Any = np.float32,
) -> dict[str, GradientFlow]:
    """Gradient flow of a vanilla RNN, an LSTM (forget bias 0, +1, +2) and a GRU of the same size, each
    with PyTorch's default initialization (seeded), on the same standard-normal input (T, N, I).

    Parameters
    ----------
    steps : int, default 100
        T.
    input_size : int, default 32
        I.
    hidden_size : int, default 64
        H.
    batch : int, default 1
        N.
    seed : int, default 0
        Seeds the input and every layer's initialization.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The layers' dtype.

    Returns
    -------
    dict of str to GradientFlow
        Keyed by the names in ``COMPARISON``, in that order.
    """
    from .layers import GRU, LSTM, RNN

    steps = v.check_int("steps", steps, 1)
    input_size = v.check_int("input_size", input_size, 1)
    hidden_size = v.check_int("hidden_size", hidden_size, 1)
    batch = v.check_int("batch", batch, 1)
    dtype = v.check_dtype(dtype)
    x = np.random.default_rng(seed).standard_normal((steps, batch, input_size)).astype(dtype)
    layers = {
        "RNN (tanh)": RNN(input_size, hidden_size, dtype=dtype, seed=seed),
        "LSTM": LSTM(input_size, hidden_size, dtype=dtype, seed=seed),
        "LSTM forget+1": LSTM(input_size, hidden_size, forget_bias=1.0, dtype=dtype, seed=seed),
        "LSTM forget+2": LSTM(input_size, hidden_size, forget_bias=2.0, dtype=dtype, seed=seed),
        "GRU": GRU(input_size, hidden_size, dtype=dtype, seed=seed),
    }
    return {name: gradient_flow(layer, x) for name, layer in layers.items()}


def _default_rows(steps: int) -> list[int]:
    """Steps to show: 0, a tenth of the way, two tenths, ..., and the last."""
    return sorted({*range(0, steps, max(1, steps // 10)), steps - 1})


def format_table(
    results: dict[str, GradientFlow], rows: Sequence[int] | None = None, what: str = "input"
) -> str:
    """A text table of gradient norms: one row per step, one column per model, in scientific notation;
    an exact zero (underflow) prints as 0.

    Parameters
    ----------
    results : dict of str to GradientFlow
        The models' measurements, for instance what :func:`compare` returns.
    rows : sequence of int, optional
        The steps to show; default 0, T/10, 2T/10, ... and the last step.
    what : {"input", "hidden"}, default "input"
        Which norms to show.

    Returns
    -------
    str
        The table, under a title line.
    """
    if what not in ("input", "hidden"):
        raise ValueError(f"what must be 'input' or 'hidden', got {what!r}")
    names = list(results)
    steps = next(iter(results.values())).steps
    rows = _default_rows(steps) if rows is None else list(rows)
    cells = [["t", *names]]
    for t in rows:
        line = [str(t)]
        for name in names:
            series = getattr(results[name], what)
            value = float("nan") if series is None else float(series[t])
            line.append("0" if value == 0.0 else f"{value:.2e}")
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    symbol = "dL/dx_t" if what == "input" else "dL/dh_t"
    title = f"||{symbol}|| for L = sum(y_{steps - 1}) (the loss on the last step)"
    out = [title]
    for c in cells:
        out.append("  ".join(c[i].rjust(widths[i]) for i in range(len(c))))
    return "\n".join(out)


def plot(results: dict[str, GradientFlow], path: str, title: str | None = None) -> None:
    """Draw ||dL/dx_t|| and ||dL/dh_t|| against t on a log scale, side by side (needs matplotlib).
    Exact zeros (underflow) cannot sit on a log axis: they are drawn at the bottom edge as crosses.

    Parameters
    ----------
    results : dict of str to GradientFlow
        The models' measurements, one line each.
    path : str or os.PathLike
        The image file to write (its suffix picks the format: .png, .svg, .pdf).
    title : str, optional
        A title above both panels.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib (pip install matplotlib)") from exc

    panels = [("input", "||dL/dx_t||"), ("hidden", "||dL/dh_t||")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    positive = [
        float(s[s > 0].min())
        for r in results.values()
        for s in (r.input, r.hidden)
        if s is not None and (s > 0).any()
    ]
    floor = 10 ** math.floor(math.log10(min(positive))) / 10 if positive else 1e-45
    for ax, (what, label) in zip(axes, panels):
        for name, r in results.items():
            series = getattr(r, what)
            if series is None:
                continue
            t = np.arange(series.shape[0])
            nonzero = series > 0
            (line,) = ax.semilogy(t[nonzero], series[nonzero], label=name)
            if (~nonzero).any():
                ax.semilogy(t[~nonzero], np.full((~nonzero).sum(), floor), "x", color=line.get_color(), ms=3)
        ax.set_xlabel("step t (the loss is on the last step)")
        ax.set_title(label)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylim(bottom=floor / 2)
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_cli(
    steps: int = 100,
    hidden_size: int = 64,
    input_size: int = 32,
    seed: int = 0,
    dtype: Any = np.float32,
    plot_path: str | None = None,
    out: Any = None,
) -> dict[str, GradientFlow]:
    """What ``python -m fusedrnn gradflow`` does: compare, print both tables, optionally plot."""
    import sys

    out = sys.stdout if out is None else out
    results = compare(steps, input_size, hidden_size, seed=seed, dtype=dtype)
    dt = np.dtype(dtype).name
    print(f"Gradient flow over T={steps}, H={hidden_size}, I={input_size}, {dt}, seed {seed}", file=out)
    print(format_table(results, what="input"), file=out)
    print(file=out)
    print(format_table(results, what="hidden"), file=out)
    if plot_path:
        plot(
            results,
            plot_path,
            title=f"Gradient flow back from the last step (T={steps}, H={hidden_size}, {dt})",
        )
        print(f"\nwrote {plot_path}", file=out)
    return results
