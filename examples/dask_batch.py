"""Batch inference of a saved model over a Dask bag of variable-length sequences, on a cluster of worker
processes, checked against the same sequences run one at a time in this process.

The model (a two-layer LSTM) is written with ``fr.save`` and read back with ``fr.load`` by each worker
once, when the worker starts: a worker plugin (``LoadedModel``) holds it, and every task of that worker
uses it. Each partition of the bag is sorted by length and cut into batches of sequences of similar
length, padded, and run as one call with ``lengths=`` (PyTorch's packed-sequence semantics: the state
``h_n`` is each sequence's own last step, and the padding never reaches it). The answer is the top layer's
``h_n`` for every sequence, one vector each.

Threads: the cluster has 2 worker processes with one Dask thread each, and fusedrnn's kernels must not add
threads of their own on top (2 workers x 2 kernel threads on 2 cores would oversubscribe them). Dask's
nanny sets ``OMP_NUM_THREADS=1`` in each worker process before starting it (the Dask config
``distributed.nanny.pre-spawn-environ``), which fusedrnn reads at import; each worker reports
``fr.get_num_threads()`` and the example checks it is 1. A ``FUSEDRNN_NUM_THREADS`` or ``OMP_NUM_THREADS``
already set where the cluster starts is inherited by the workers and wins over Dask's default.

The check: the workers' answer against this process's, where every sequence runs alone, unpadded, with
this process's thread count (all CPUs). Batching, padding and thread count change which sums a float32
product adds together, not the result of the recurrence beyond its last rounding, so the two agree within
TOLERANCE (a few float32 ulps of values in [-1, 1], carried through up to ``--max-length`` steps); with
the AVX2 kernels they are the same bits (see ``fusedrnn.stream``'s docstring on the order of their sums).

    python examples/dask_batch.py        # about 5 s on 2 cores, most of it starting the workers
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import dask.bag as db
import numpy as np
from distributed import Client, LocalCluster, WorkerPlugin, get_worker

import fusedrnn as fr

FEATURES = 16
PLUGIN = "fusedrnn-model"
THREADS_PER_WORKER = 1
# |workers' answer - single-process answer|, at most: h_n lies in [-1, 1] (o * tanh(c)), so this is about
# 80 float32 ulps near 1 -- rounding differences of the products, grown a little by the recurrence.
TOLERANCE = 1e-5


def make_sequences(count: int, rng: np.random.Generator, min_len: int, max_len: int) -> list[np.ndarray]:
    """``count`` sequences (T_i, FEATURES) of float32, T_i uniform in [min_len, max_len]."""
    lengths = rng.integers(min_len, max_len + 1, count)
    return [rng.standard_normal((t, FEATURES)).astype(np.float32) for t in lengths]


def final_states(layer: fr.RNNBase, seqs: list[np.ndarray], batch_size: int) -> np.ndarray:
    """The top layer's h_n of each sequence, (len(seqs), H_out): sequences sorted by length, then batches
    of up to ``batch_size`` padded to their longest and run as one call with ``lengths=``."""
    lengths = np.array([len(s) for s in seqs])
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(seqs), layer.config.output_size), layer.dtype)
    for start in range(0, len(seqs), batch_size):
        idx = order[start : start + batch_size]
        x = np.zeros((lengths[idx].max(), idx.size, FEATURES), np.float32)  # (T, N, I), zero-padded
        for n, i in enumerate(idx):
            x[: lengths[i], n] = seqs[i]
        _, state = layer(x, lengths=lengths[idx])
        h_n = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h_n, c_n)
        out[idx] = h_n[-1]
    return out


# -- on the workers ---------------------------------------------------------------------------------------


class LoadedModel(WorkerPlugin):
    """The model file, loaded once per worker process when the plugin is registered (and on any worker
    that joins later); it records the worker's kernel thread count before anything changes it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.layer = None
        self.loads = 0
        self.threads = 0

    def setup(self, worker) -> None:
        self.threads = fr.get_num_threads()
        self.layer = fr.load(self.path)
        self.loads += 1


def embed_partition(items: list[tuple[int, np.ndarray]], batch_size: int) -> list[tuple[int, np.ndarray]]:
    """One partition of (index, sequence) -> (index, h_n of the top layer), with the worker's model."""
    layer = get_worker().plugins[PLUGIN].layer
    vectors = final_states(layer, [seq for _, seq in items], batch_size)
    return [(i, v) for (i, _), v in zip(items, vectors)]


def worker_report(dask_worker) -> dict:
    plugin = dask_worker.plugins[PLUGIN]
    return {"pid": os.getpid(), "threads": plugin.threads, "loads": plugin.loads, "now": fr.get_num_threads()}


# -- the run ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", type=int, default=1000, help="sequences to run (default 1000)")
    parser.add_argument("--min-length", type=int, default=5, help="shortest sequence (default 5)")
    parser.add_argument("--max-length", type=int, default=100, help="longest sequence (default 100)")
    parser.add_argument("--hidden", type=int, default=64, help="the LSTM's hidden units (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of the bag (default 8)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per call (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    seqs = make_sequences(args.sequences, np.random.default_rng(args.seed), args.min_length, args.max_length)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.fr")
        fr.save(fr.LSTM(FEATURES, args.hidden, num_layers=2, seed=args.seed), path)

        start = time.perf_counter()
        layer = fr.load(path)
        reference = np.concatenate([final_states(layer, [seq], 1) for seq in seqs])
        single_seconds = time.perf_counter() - start

        start = time.perf_counter()
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=THREADS_PER_WORKER,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            client.register_plugin(LoadedModel(path), name=PLUGIN)
            started = time.perf_counter()
            bag = db.from_sequence(list(enumerate(seqs)), npartitions=args.partitions)
            pairs = bag.map_partitions(embed_partition, args.batch_size).compute()
            cluster_seconds = time.perf_counter() - started
            reports = list(client.run(worker_report).values())
        startup_seconds = time.perf_counter() - start - cluster_seconds

    result = np.stack([v for _, v in sorted(pairs, key=lambda pair: pair[0])])
    assert len(pairs) == len(seqs) and result.shape == reference.shape
    difference = float(np.abs(result - reference).max())
    threads = sorted({r["threads"] for r in reports} | {r["now"] for r in reports})
    loads = sorted({r["loads"] for r in reports})
    assert len(reports) == args.workers, f"{len(reports)} workers answered, expected {args.workers}"
    assert threads == [THREADS_PER_WORKER], (
        f"the workers' fusedrnn thread counts are {threads}, not {THREADS_PER_WORKER}: is "
        "FUSEDRNN_NUM_THREADS or OMP_NUM_THREADS set in this environment?"
    )
    assert loads == [1], f"model loads per worker: {loads}"
    assert difference <= TOLERANCE, f"max difference {difference:.3g} > {TOLERANCE:g}"

    say(
        f"sequences: {len(seqs)} of {args.min_length} to {args.max_length} steps, {args.partitions} "
        f"partitions, batches of up to {args.batch_size} (lengths=)"
    )
    say(f"workers: {len(reports)} processes, model loaded once in each")
    say(f"threads per worker: {threads[0]} (fusedrnn.get_num_threads() on every worker)")
    say(f"max difference from the single-process answer: {difference:.3g} (tolerance {TOLERANCE:g})")
    say(
        f"time: {cluster_seconds:.2f} s on the cluster (after {startup_seconds:.1f} s starting it), "
        f"{single_seconds:.2f} s one sequence at a time in this process"
    )
    return {
        "sequences": len(seqs),
        "workers": len(reports),
        "threads_per_worker": threads[0],
        "max_difference": difference,
        "seconds": cluster_seconds,
    }


if __name__ == "__main__":
    main()
