"""Benchmark fusedrnn against its NumPy reference, PyTorch and ONNX Runtime, in one process.

``python -m fusedrnn bench`` runs :func:`run`.

1. For every workload (cell, inference or training, shape, layers, directions, dtype, projection, lengths;
   the default ones, or the user's own from the command line's shape options): one set of weights
   (from a ``torch.nn`` module when PyTorch is installed, loaded into fusedrnn with ``load_state_dict``;
   otherwise fusedrnn's own initialization), one input ``x`` and, for training, one output cotangent ``g``
   (loss ``sum(y * g)``).

Then, for every workload at every requested thread count:

2. runs every implementation once and checks its answer against fusedrnn's (outputs, final states, and for
   training the input and weight gradients): a difference beyond float32 tolerance raises
   :class:`AnswerMismatch` -- nothing is timed whose answer is wrong;
3. warms every implementation up, then times them interleaved: in each round every implementation runs
   once, in a rotating order, so drift of the machine hits all of them alike;
4. reports the median (p50) and 90th percentile (p90) of each and ``ratio = anchor median / fusedrnn
   median`` (above 1: fusedrnn is faster), beside the target ratio that the project sets for that workload,
   anchor and thread count, and whether the measured ratio meets it: by default one table in at most 100
   columns and the targets; with ``verbose=True`` every section below and every note.

Around the timing, in the same process: the float32 matmul rate (NumPy, a square sgemm at each thread
count), against which the large-batch rows report their GFLOP/s; the rate at which NumPy reads an array of
the size of one step's recurrent weights, against which the batch-1 rows report their time per step;
fusedrnn's own 1-thread / 2-thread speedup; and its first call on a new layer against its steady state.
``memory=True`` adds peak memory, each implementation in a fresh process (:func:`measure_memory`).

Anchors: ``numpy`` (``fusedrnn.reference``, explicit per-step NumPy loops; slow, so it is timed in fewer
rounds), ``torch`` (``torch.nn.RNN``/``LSTM``/``GRU`` with ``torch.set_num_threads`` equal to the thread
count, inference under ``torch.inference_mode``), ``onnxruntime`` (float32 inference without projection
only: the torch module exported to ONNX, or, without PyTorch or for a ragged batch, the same graph built
from the weights with ``onnx.helper``; one session per thread count with ``intra_op_num_threads`` equal to
it). Anchors that are not installed, or cannot express a workload, are skipped with a note.

Modules, one concern each:

- ``workloads``: the workloads and the performance targets they carry;
- ``problems``: a workload's weights, input and cotangent, and the models the anchors run;
- ``onnx_graph``: ONNX Runtime's model, built independently of ``fusedrnn.interop``;
- ``anchors``: fusedrnn and each anchor as a runner; ``answers``: the check of their answers;
- ``timing``: warm-up and interleaved timing of one problem at one thread count;
- ``limits``: the matmul rate and the weight-read rate the rows are compared with;
- ``memory``: peak memory per call, in fresh processes;
- ``report``: the printed table, sections and targets; ``plotting``: the ratios drawn (a busy run marked);
- ``machine``: versions, CPU, load, the other processes' share of the CPU, and whether the run was busy;
- ``progress``: the progress line and the time left; ``notes``: the notes, and which the default report shows;
- ``stream_steps``: one step at a time (streams and cells) against torch's cells;
- ``cli``: :func:`run`, which puts them together; ``optional``: the optional libraries, imported in one place.
"""

from __future__ import annotations

from .cli import run
from .errors import AnswerMismatch, BenchError
from .memory import measure_memory
from .plotting import plot
from .report import format_table
from .workloads import DEFAULT_WORKLOADS, QUICK_WORKLOADS, Workload, default_thread_counts

__all__ = [
    "AnswerMismatch",
    "BenchError",
    "DEFAULT_WORKLOADS",
    "QUICK_WORKLOADS",
    "Workload",
    "default_thread_counts",
    "format_table",
    "measure_memory",
    "plot",
    "run",
]
