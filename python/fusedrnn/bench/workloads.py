"""The benchmarked workloads and the performance targets they carry."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from typing import Any

from .._cells import CellKind, cell_kind

# A target: (anchor, ratio at 1 thread, ratio at 2 threads); ratio = anchor time / fusedrnn time.
TargetSpec = tuple[str, float, float]

# Performance targets beyond the ratios (which each workload carries): fusedrnn's first call on a new layer
# takes at most FIRST_CALL_TARGET times its steady-state median.
FIRST_CALL_TARGET = 2.0
# Workloads with at least this batch are reported against the matmul roof (GFLOP/s).
LARGE_BATCH = 32


# The cells a workload may have (fusedrnn's names: the vanilla RNN's carries its nonlinearity), the modes
# and the dtypes.
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
MODES = ("inference", "training")
DTYPES = ("float32", "float64")


class WorkloadError(ValueError):
    """A workload field out of range; ``field`` names the field (the command line names its option)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def _is_integer(value: Any) -> bool:
    """An int or a NumPy integer; not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_positive(field_name: str, value: Any) -> None:
    if not _is_integer(value) or value < 1:
        raise WorkloadError(field_name, f"expected a positive integer, got {value!r}")


@dataclass(frozen=True)
class Workload:
    """One benchmarked problem: ``cell`` in ``CELLS``, ``mode`` in {"inference", "training"}, x of shape
    (T, N, I), hidden size H, ``layers`` layers, one or two directions, zero initial state, ``dtype``
    "float32" or "float64"; ``proj_size`` P > 0 (LSTM only, P < H) projects h to P units as
    ``torch.nn.LSTM(proj_size=P)`` does; ``lengths`` (N values, each 1..T) makes the batch ragged with
    PyTorch's packed-sequence semantics (fusedrnn's ``lengths=``). Out-of-range fields raise
    :class:`WorkloadError` (a ValueError) naming the field.

    The performance targets do not take part in equality: ``targets`` holds (anchor, ratio at 1 thread,
    ratio at 2 threads); ``matmul_fraction_target`` is the least fraction of the run's matmul rate that
    fusedrnn's GFLOP/s should reach; ``scaling_target`` the least 1-thread / 2-thread speedup."""

    cell: str
    mode: str
    T: int
    N: int
    I: int  # noqa: E741 -- the shape letter of the design documents
    H: int
    layers: int = 1
    bidirectional: bool = False
    dtype: str = "float32"
    proj_size: int = 0
    lengths: tuple[int, ...] | None = None
    targets: tuple[TargetSpec, ...] = field(default=(), compare=False)
    matmul_fraction_target: float | None = field(default=None, compare=False)
    scaling_target: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise WorkloadError("cell", f"expected one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.mode not in MODES:
            raise WorkloadError("mode", f"expected one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("T", "N", "I", "H", "layers"):
            _check_positive(name, getattr(self, name))
            object.__setattr__(self, name, int(getattr(self, name)))  # NumPy integers become ints
        if self.dtype not in DTYPES:
            raise WorkloadError("dtype", f"expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.proj_size:
            if self.cell != "lstm":
                raise WorkloadError("proj_size", f"only an LSTM has a projection, got cell {self.cell!r}")
            if not _is_integer(self.proj_size) or not 0 < self.proj_size < self.H:
                raise WorkloadError(
                    "proj_size", f"expected a size below the hidden size {self.H}, got {self.proj_size!r}"
                )
        if self.lengths is not None:
            lengths = tuple(self.lengths)  # a list from JSON (the memory child), or an array
            if len(lengths) != self.N:
                raise WorkloadError(
                    "lengths", f"expected {self.N} values, one per sequence of the batch, got {len(lengths)}"
                )
            if not all(_is_integer(n) and 1 <= n <= self.T for n in lengths):
                raise WorkloadError(
                    "lengths", f"expected lengths from 1 to the sequence length {self.T}, got {lengths}"
                )
            object.__setattr__(self, "lengths", tuple(int(n) for n in lengths))

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def kind(self) -> CellKind:
        """The description of ``cell``."""
        return cell_kind(self.cell)

    @property
    def gates(self) -> int:
        return self.kind.gates

    @property
    def output_size(self) -> int:
        """H_out: the size of h, P with a projection."""
        return self.proj_size or self.H

    @property
    def itemsize(self) -> int:
        return 8 if self.dtype == "float64" else 4

    def _kind_words(self, rnn_sep: str) -> str:
        family = self.kind.family.upper()
        if self.kind.nonlinearity is not None:
            family += rnn_sep + self.kind.nonlinearity
        return family

    def _extras(self) -> str:
        extras = f" P={self.proj_size}" if self.proj_size else ""
        if self.dtype != "float32":
            extras += " " + self.dtype
        if self.lengths is not None:
            extras += " ragged"
        return extras

    @property
    def name(self) -> str:
        kind = self._kind_words(" ")
        if self.bidirectional:
            kind += " bidirectional"
        if self.layers > 1:
            kind += f" {self.layers}-layer"
        return f"{kind} {self.mode} T={self.T} N={self.N} I={self.I} H={self.H}{self._extras()}"

    @property
    def short_name(self) -> str:
        """The name in the default report's table: "biLSTM x2 inf T=100 N=1 I=128 H=256"."""
        kind = ("bi" if self.bidirectional else "") + self._kind_words("-")
        if self.layers > 1:
            kind += f" x{self.layers}"
        mode = "inf" if self.mode == "inference" else "train"
        return f"{kind} {mode} T={self.T} N={self.N} I={self.I} H={self.H}{self._extras()}"

    @property
    def flops(self) -> float:
        """Matrix-product FLOPs of one call: forward 2*T*N*G*H*(I_l + H_out) per layer and direction (I_l the
        layer's input size), plus 2*T*N*P*H for a projection; training 3x that (the input gradient, the
        state gradient and the weight gradients cost one forward product each). Elementwise work is not
        counted, and neither is a ragged batch's shorter sequences."""
        total = 0.0
        h_out = self.output_size
        for layer in range(self.layers):
            i_l = self.I if layer == 0 else self.directions * h_out
            per_step = self.gates * self.H * (i_l + h_out) + self.proj_size * self.H
            total += self.directions * 2.0 * self.T * self.N * per_step
        return total * (3 if self.mode == "training" else 1)

    @property
    def recurrent_weight_bytes(self) -> int:
        """Bytes of every recurrent weight matrix W_hh (all layers and directions, and W_hr with a
        projection): what one time step must read at batch 1."""
        per_direction = self.gates * self.H * self.output_size + self.proj_size * self.H
        return self.layers * self.directions * per_direction * self.itemsize

    def target(self, anchor: str, threads: int) -> float | None:
        """The least ratio targeted against ``anchor`` at ``threads`` threads, or None when it sets none."""
        for name, at1, at2 in self.targets:
            if name == anchor:
                return {1: at1, 2: at2}.get(threads)
        return None

    def shape_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "mode": self.mode,
            "T": self.T,
            "N": self.N,
            "I": self.I,
            "H": self.H,
            "layers": self.layers,
            "bidirectional": self.bidirectional,
            "dtype": self.dtype,
            "proj_size": self.proj_size,
            "lengths": None if self.lengths is None else list(self.lengths),
        }


# The performance targets: least ratio anchor time / fusedrnn time.
_LSTM_N1 = (("onnxruntime", 1.0, 1.5), ("torch", 1.2, 2.0))
_LSTM_N64 = (("onnxruntime", 1.0, 1.0), ("torch", 1.1, 1.1))
_GRU_N1 = (("onnxruntime", 1.25, 1.5),)
_GRU_N64 = (("onnxruntime", 1.05, 1.05),)
_BILSTM_N1 = (("onnxruntime", 1.0, 1.5),)
_BILSTM_N8 = (("onnxruntime", 1.0, 1.1),)
_LSTM_TRAIN = (("torch", 1.3, 1.3),)
_GRU_TRAIN = (("torch", 3.0, 3.0),)
_FRACTION = 0.85  # of the run's matmul rate, at N=64
_SCALING = 1.6  # 1-thread time / 2-thread time, at N=1 H=256

DEFAULT_WORKLOADS: tuple[Workload, ...] = (
    Workload("lstm", "inference", 100, 1, 128, 256, targets=_LSTM_N1, scaling_target=_SCALING),
    Workload("lstm", "inference", 100, 64, 256, 256, targets=_LSTM_N64, matmul_fraction_target=_FRACTION),
    Workload("gru", "inference", 100, 1, 128, 256, targets=_GRU_N1, scaling_target=_SCALING),
    Workload("gru", "inference", 100, 64, 256, 256, targets=_GRU_N64, matmul_fraction_target=_FRACTION),
    Workload(
        "lstm",
        "inference",
        100,
        1,
        128,
        256,
        layers=2,
        bidirectional=True,
        targets=_BILSTM_N1,
        scaling_target=_SCALING,
    ),
    Workload("lstm", "inference", 100, 8, 128, 256, layers=2, bidirectional=True, targets=_BILSTM_N8),
    Workload("lstm", "training", 50, 32, 128, 256, targets=_LSTM_TRAIN),
    Workload("gru", "training", 100, 1, 128, 256, targets=_GRU_TRAIN, scaling_target=_SCALING),
    # The vanilla RNN, for information (no targets): tanh at batch 1, relu at a large batch.
    Workload("rnn_tanh", "inference", 100, 1, 128, 256),
    Workload("rnn_relu", "inference", 100, 64, 256, 256),
)

# --quick: a smoke run (seconds, mostly imports); the numbers mean nothing, the checks still run. Each tiny
# workload stands for a default one and carries its targets, so that every column and section shows.
QUICK_WORKLOADS: tuple[Workload, ...] = (
    Workload("lstm", "inference", 6, 1, 8, 16, targets=_LSTM_N1, scaling_target=_SCALING),
    Workload("gru", "inference", 6, LARGE_BATCH, 8, 16, targets=_GRU_N64, matmul_fraction_target=_FRACTION),
    Workload("lstm", "inference", 6, 1, 8, 16, layers=2, bidirectional=True, targets=_BILSTM_N1),
    Workload("lstm", "training", 5, 2, 8, 16, targets=_LSTM_TRAIN),
    Workload("gru", "training", 5, 1, 8, 16, targets=_GRU_TRAIN, scaling_target=_SCALING),
    Workload("rnn_tanh", "inference", 6, 1, 8, 16),
    Workload("rnn_relu", "inference", 6, LARGE_BATCH, 8, 16),
)


def with_targets(w: Workload) -> Workload:
    """``w``, or the default workload it equals, with that one's targets (which equality ignores)."""
    return next((d for d in DEFAULT_WORKLOADS if d == w), w)


def default_workloads(quick: bool) -> tuple[Workload, ...]:
    """QUICK_WORKLOADS or DEFAULT_WORKLOADS, as this module holds them at the time of the call."""
    return QUICK_WORKLOADS if quick else DEFAULT_WORKLOADS


def default_thread_counts() -> list[int]:
    """1 and the number of cores this process may run on (just [1] on a single core)."""
    try:
        cores = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return sorted({1, max(1, cores)})
