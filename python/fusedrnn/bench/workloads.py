"""The benchmarked workloads and the performance targets they carry."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Workload:
    """One benchmarked problem: ``cell`` in {"lstm", "gru"}, ``mode`` in {"inference", "training"},
    x of shape (T, N, I), hidden size H, ``layers`` layers, one or two directions, float32, zero initial
    state.

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
    targets: tuple[TargetSpec, ...] = field(default=(), compare=False)
    matmul_fraction_target: float | None = field(default=None, compare=False)
    scaling_target: float | None = field(default=None, compare=False)

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
    def name(self) -> str:
        kind = self.cell.upper()
        if self.bidirectional:
            kind += " bidirectional"
        if self.layers > 1:
            kind += f" {self.layers}-layer"
        return f"{kind} {self.mode} T={self.T} N={self.N} I={self.I} H={self.H}"

    @property
    def short_name(self) -> str:
        kind = ("bi" if self.bidirectional else "") + self.cell.upper()
        if self.layers > 1:
            kind += f" x{self.layers}"
        return f"{kind} {'inf' if self.mode == 'inference' else 'train'} N={self.N}"

    @property
    def flops(self) -> float:
        """Matrix-product FLOPs of one call: forward 2*T*N*G*H*(I_l + H) per layer and direction (I_l the
        layer's input size), training 3x that (the input gradient, the state gradient and the weight
        gradients cost one forward product each). Elementwise work is not counted."""
        total = 0.0
        for layer in range(self.layers):
            i_l = self.I if layer == 0 else self.directions * self.H
            total += self.directions * 2.0 * self.T * self.N * self.gates * self.H * (i_l + self.H)
        return total * (3 if self.mode == "training" else 1)

    @property
    def recurrent_weight_bytes(self) -> int:
        """Bytes of every recurrent weight matrix W_hh (all layers and directions), float32: what one time
        step must read at batch 1."""
        return self.layers * self.directions * self.gates * self.H * self.H * 4

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
)

# --quick: a smoke run (seconds, mostly imports); the numbers mean nothing, the checks still run. Each tiny
# workload stands for a default one and carries its targets, so that every column and section shows.
QUICK_WORKLOADS: tuple[Workload, ...] = (
    Workload("lstm", "inference", 6, 1, 8, 16, targets=_LSTM_N1, scaling_target=_SCALING),
    Workload("gru", "inference", 6, LARGE_BATCH, 8, 16, targets=_GRU_N64, matmul_fraction_target=_FRACTION),
    Workload("lstm", "inference", 6, 1, 8, 16, layers=2, bidirectional=True, targets=_BILSTM_N1),
    Workload("lstm", "training", 5, 2, 8, 16, targets=_LSTM_TRAIN),
    Workload("gru", "training", 5, 1, 8, 16, targets=_GRU_TRAIN, scaling_target=_SCALING),
)


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
