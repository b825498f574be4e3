"""Threads and the kernels' answers.

1. Calls on ONE layer from several Python threads at once (the kernels release the GIL), mixing inference
   calls with record + backward, give bit-identical answers to the same calls made one after the other.
2. The answers are bit-identical at ``fusedrnn.set_num_threads(1)`` and ``(2)``, forward and backward: the
   work split is fixed by the packing of the weights, never by the thread count.

Hidden sizes are large enough that the kernels use their worker pool (at least 2**15 multiply-adds per
step at batch 1: H >= 128 for LSTM and GRU, H = 256 for a plain RNN).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn._testing import get_tuning, tuning

N_THREADS = 4
CALLS_PER_THREAD = 20


@pytest.fixture
def threads():
    """set(n): the kernels' thread count for this test; restored afterwards."""
    before = fr.get_num_threads()
    yield fr.set_num_threads
    fr.set_num_threads(before)


def _arrays(result):
    """Every array of a call's result, in a fixed order."""
    out = []
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, (tuple, list)):
        for item in result:
            out += _arrays(item)
    elif isinstance(result, dict):
        for key in sorted(result):
            out += _arrays(result[key])
    elif result is not None:
        raise TypeError(type(result))
    return out


def _infer(layer, x):
    return _arrays(layer(x))


def _train(layer, x, gy):
    tape = layer.record(x)
    g = tape.backward(gy)
    return _arrays((tape.output, tape.state, g.input, g.state, g.params))


def _assert_identical(got, want, what):
    assert len(got) == len(want), what
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: array {k}"
        if not np.array_equal(a, b):
            raise AssertionError(f"{what}: array {k} differs, max |diff| {np.max(np.abs(a - b)):.3g}")


CONCURRENT = {
    "lstm-H256": lambda: fr.LSTM(48, 256, seed=1),
    "gru-H128": lambda: fr.GRU(48, 128, seed=2),
    "lstm-bidir-2layer-H128": lambda: fr.LSTM(48, 128, num_layers=2, bidirectional=True, seed=3),
}


@pytest.mark.parametrize("make", CONCURRENT.values(), ids=CONCURRENT.keys())
@pytest.mark.parametrize("batch", [1, 8], ids=["N1", "N8"])
def test_concurrent_calls_on_one_layer_equal_serial_calls(make, batch, threads):
    """4 Python threads x 20 calls on one layer, released together; every call alternates between an
    inference call and record + backward, each on its own input."""
    threads(2)
    layer = make()
    rng = np.random.default_rng(batch)
    steps = 6
    out_width = layer.hidden_size * layer.num_directions
    jobs = []  # (kind, x, gy)
    for k in range(N_THREADS * CALLS_PER_THREAD):
        x = rng.standard_normal((steps, batch, layer.input_size)).astype(np.float32)
        gy = rng.standard_normal((steps, batch, out_width)).astype(np.float32)
        jobs.append(("infer" if k % 2 == 0 else "train", x, gy))

    def run(job):
        kind, x, gy = job
        return _infer(layer, x) if kind == "infer" else _train(layer, x, gy)

    serial = [run(job) for job in jobs]

    results: list = [None] * len(jobs)
    errors: list = []
    start = threading.Barrier(N_THREADS)

    def worker(t):
        try:
            start.wait()
            for k in range(t, len(jobs), N_THREADS):
                results[k] = run(jobs[k])
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(N_THREADS)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    for k, (got, want) in enumerate(zip(results, serial)):
        _assert_identical(got, want, f"call {k} ({jobs[k][0]})")


THREAD_COUNT_CASES = {
    "lstm-H256": lambda: fr.LSTM(40, 256, seed=4),
    "lstm-H128-bidir": lambda: fr.LSTM(40, 128, bidirectional=True, seed=5),
    "lstm-H160-2layer-bidir": lambda: fr.LSTM(40, 160, num_layers=2, bidirectional=True, seed=6),
    "lstm-proj-H256": lambda: fr.LSTM(40, 256, proj_size=96, seed=7),
    "gru-H256": lambda: fr.GRU(40, 256, seed=8),
    "gru-H128-2layer-bidir": lambda: fr.GRU(40, 128, num_layers=2, bidirectional=True, seed=9),
    "gru-reset-before-H192": lambda: fr.GRU(40, 192, linear_before_reset=False, seed=10),
    "rnn-tanh-H256": lambda: fr.RNN(40, 256, seed=11),
    "rnn-relu-H256-bidir": lambda: fr.RNN(40, 256, nonlinearity="relu", bidirectional=True, seed=12),
}


def _all_answers(make, batch, seed, steps):
    """answers(): a new layer's inference, record + backward and (batch > 1) varying-lengths answers on
    fixed inputs, as lists of arrays; call it at each setting to compare."""
    layer = make()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch, layer.input_size)).astype(np.float32)
    y, _ = layer(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    lengths = np.maximum(1, steps - np.arange(batch) % steps) if batch > 1 else None

    def answers():
        return (_infer(layer, x), _train(layer, x, gy),
                _arrays(layer(x, lengths=lengths)) if lengths is not None else [])

    return answers


def _assert_same_answers(got, want, what):
    for part, name in enumerate(("forward", "record + backward", "forward, varying lengths")):
        _assert_identical(got[part], want[part], f"{name}: {what}")


@pytest.mark.parametrize("make", THREAD_COUNT_CASES.values(), ids=THREAD_COUNT_CASES.keys())
@pytest.mark.parametrize("batch", [1, 8], ids=["N1", "N8"])
def test_one_and_two_threads_give_identical_answers(make, batch, threads):
    answers = _all_answers(make, batch, seed=batch, steps=9)
    results = {}
    for n in (1, 2):
        threads(n)
        results[n] = answers()
    _assert_same_answers(results[2], results[1], "2 threads against 1")


@pytest.mark.parametrize("make", THREAD_COUNT_CASES.values(), ids=THREAD_COUNT_CASES.keys())
@pytest.mark.parametrize("batch", [5, 40], ids=["N5", "N40"])
def test_sequences_split_across_threads_give_identical_answers(make, batch, threads):
    """At large batch each thread takes its own sequences through every step (where no step needs values
    from other sequences), instead of a share of every step's hidden units. Here from 1 sequence per
    thread on (5: 3 and 2 rows, below the kernels' smallest tile), and bidirectional layers on one team,
    so that the split reaches every layer; the answers must be those of one thread."""
    answers = _all_answers(make, batch, seed=batch + 20, steps=7)
    assert get_tuning()["rows_per_member"] > 0
    threads(1)
    serial = answers()
    threads(2)
    with tuning(rows_per_member=1, directions_at_once=False):
        got = answers()
    _assert_same_answers(got, serial, "sequences split across threads")


@pytest.mark.parametrize("make", THREAD_COUNT_CASES.values(), ids=THREAD_COUNT_CASES.keys())
@pytest.mark.parametrize("batch", [1, 8], ids=["N1", "N8"])
def test_slices_taken_over_from_another_thread_give_identical_answers(make, batch, threads):
    """Forward steps hand out hidden-unit slices to whichever thread claims them first, so a late thread's
    work is done by another. Here every thread goes for the other's slices first, so slices change hands
    all the time; the answers must still be those of one thread. Bidirectional layers run on one team, so
    that their directions share slices too."""
    answers = _all_answers(make, batch, seed=batch + 10, steps=9)
    threads(1)
    serial = answers()
    threads(2)
    with tuning(claim_others_first=True, directions_at_once=False):
        for _ in range(3):
            _assert_same_answers(answers(), serial, "slices changing hands")
    # and the barrier every step, as the two-phase cells always do
    with tuning(claim_steps=False, directions_at_once=False):
        _assert_same_answers(answers(), serial, "a barrier every step")
