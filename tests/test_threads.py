"""Threads and the kernels' answers.

1. Calls on ONE layer from several Python threads at once (the kernels release the GIL), mixing inference
   calls with record + backward, give bit-identical answers to the same calls made one after the other.
2. The answers are bit-identical at ``fusedrnn.set_num_threads(1)`` and ``(2)``, forward and backward: the
   work split is fixed by the packing of the weights, never by the thread count (so a call that finds the
   pool busy and runs on its own thread computes the same numbers).
3. While other threads change the thread count, the weights and the tuning switches, every answer is the
   serial answer under one of the weight sets, bit for bit (each case in a subprocess).

Hidden sizes are large enough that the kernels use their worker pool (at least 2**15 multiply-adds per
step at batch 1: H >= 128 for LSTM and GRU, H = 256 for a plain RNN).
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn._testing import get_tuning, set_tuning, tuning

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


CONCURRENT = {  # (layer, time steps)
    "lstm-H256": (lambda: fr.LSTM(48, 256, seed=1), 6),
    "gru-H128": (lambda: fr.GRU(48, 128, seed=2), 6),
    "lstm-bidir-2layer-H128": (lambda: fr.LSTM(48, 128, num_layers=2, bidirectional=True, seed=3), 6),
    "lstm-H160": (lambda: fr.LSTM(32, 160, seed=0), 20),
    "gru-H160-2layer-bidir": (lambda: fr.GRU(32, 160, num_layers=2, bidirectional=True, seed=0), 20),
    "lstm-peephole-H160-2layer-bidir": (
        lambda: fr.LSTM(32, 160, num_layers=2, bidirectional=True, peephole=True, seed=0),
        20,
    ),
}


@pytest.mark.parametrize("make, steps", CONCURRENT.values(), ids=CONCURRENT.keys())
@pytest.mark.parametrize("batch", [1, 8], ids=["N1", "N8"])
def test_concurrent_calls_on_one_layer_equal_serial_calls(make, steps, batch, threads):
    """4 Python threads x 20 calls on one layer, released together; every call alternates between an
    inference call and record + backward, each on its own input."""
    threads(2)
    layer = make()
    rng = np.random.default_rng(batch)
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
    "lstm-H256-2layer": lambda: fr.LSTM(40, 256, num_layers=2, seed=13),
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
        return (
            _infer(layer, x),
            _train(layer, x, gy),
            _arrays(layer(x, lengths=lengths)) if lengths is not None else [],
        )

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


# -- answers while everything else changes -------------------------------------------------------------
#
# Threads call one shared layer (inference, and record + backward) while other threads change, as fast
# as they can, what a call depends on: the kernels' thread count (1 to 4: teams of different sizes one
# after the other), the weights (load_state_dict between two sets A and B) and the kernels' tuning
# switches. Every answer must be, bit for bit, the serial answer under A or under B: the thread count and
# the switches never change the bits (checked before the threads start), and a call runs on one set of
# weights from start to end, never a mix. A backward whose tape's weights were replaced in the meantime
# must refuse (RuntimeError) rather than mix.
#
# Each case runs in a subprocess (_churn_main), so that a crash or a deadlock fails that
# case with its exit status and stack instead of taking the whole test session down.

CHURN = {
    "lstm": lambda seed: fr.LSTM(32, 128, seed=seed),
    "gru": lambda seed: fr.GRU(32, 128, seed=seed),
    "gru-reset-before": lambda seed: fr.GRU(32, 128, linear_before_reset=False, seed=seed),
    "rnn": lambda seed: fr.RNN(32, 256, seed=seed),  # H = 256: enough work per step for the pool
    "lstm-bidir": lambda seed: fr.LSTM(32, 128, bidirectional=True, seed=seed),
    "gru-L2-bidir": lambda seed: fr.GRU(32, 128, num_layers=2, bidirectional=True, seed=seed),
    "lstm-L2": lambda seed: fr.LSTM(32, 128, num_layers=2, seed=seed),
}
CHURN_CALLERS = 3
CHURN_CALLS = 30  # per caller, alternating inference and record + backward
# and more, up to this many seconds, until both weight sets and a backward were met (a busy machine
# may starve the changers while the first CHURN_CALLS run)
CHURN_EXTRA_SECONDS = 15.0
CHURN_INPUTS = 4
JOIN_TIMEOUT = 30.0  # seconds; a case takes 1 to 6 on 2 busy cores
CHILD_TIMEOUT = 90.0


def _same(got, want):
    return len(got) == len(want) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(got, want)
    )


def _max_diff(got, want):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(got, want))


def _tuning_changes(default_rows):
    """The switches' settings to cycle through; each one's answers are the defaults' bits."""
    return [
        lambda: set_tuning(claim_others_first=True),
        lambda: set_tuning(claim_steps=False),
        lambda: set_tuning(rows_per_member=1),  # every team splits the sequences
        lambda: set_tuning(claim_others_first=False, directions_at_once=False),
        lambda: set_tuning(rows_per_member=0),  # no team does
        lambda: set_tuning(claim_steps=True, directions_at_once=True),
        lambda: set_tuning(rows_per_member=default_rows),
    ]


def _projection_changes():
    return [lambda: set_tuning(projection_per_step=True), lambda: set_tuning(projection_per_step=False)]


def _churn_main(case: str, batch: int, changers: str) -> None:
    """The subprocess: serial answers under A and B, then callers and changers at once. Prints a JSON
    summary; exits 1 on a wrong answer or an error, 3 on a deadlock (after dumping every thread's stack)."""
    fr.set_num_threads(2)
    make = CHURN[case]
    layer = make(0)
    weights = {"A": layer.state_dict(), "B": make(1).state_dict()}
    rng = np.random.default_rng(batch)
    xs = [rng.standard_normal((6, batch, layer.input_size)).astype(np.float32) for _ in range(CHURN_INPUTS)]
    gys = [rng.standard_normal(layer(x)[0].shape).astype(np.float32) for x in xs]

    def infer(k):
        return _arrays(layer(xs[k]))

    def train(k):
        tape = layer.record(xs[k])
        return tape, _arrays((tape.output, tape.state))

    def grads(tape, k):
        g = tape.backward(gys[k])
        return _arrays((g.input, g.state, g.params))

    serial = {}
    slowest_training = 0.0  # seconds of one record + backward, alone
    for name, sd in weights.items():
        layer.load_state_dict(sd)
        serial[name] = []
        for k in range(CHURN_INPUTS):
            began = time.perf_counter()
            tape, recorded = train(k)
            gradients = grads(tape, k)
            slowest_training = max(slowest_training, time.perf_counter() - began)
            serial[name].append((infer(k), recorded, gradients))

    default_rows = get_tuning()["rows_per_member"]
    changes = {"tuning": _tuning_changes(default_rows), "projection": _projection_changes()}[changers]
    # The premise: thread counts and switches leave the bits alone (else "one of A or B" means nothing).
    for n in (1, 3):
        fr.set_num_threads(n)
        for change in changes:
            change()
            for k in range(CHURN_INPUTS):
                tape, recorded = train(k)
                got = (infer(k), recorded, grads(tape, k))
                for part, name in enumerate(("inference", "recorded", "gradients")):
                    if not _same(got[part], serial["B"][k][part]):
                        raise AssertionError(
                            f"{name} at {n} threads after a switch differs from the default's"
                        )
    fr.set_num_threads(2)

    seen = {"A": 0, "B": 0, "stale backward": 0, "backward": 0}
    seen_lock = threading.Lock()
    failures: list = []
    done = threading.Event()

    def count(key):
        with seen_lock:
            seen[key] += 1

    def which(got, part, k, what):
        for name in ("A", "B"):
            if _same(got, serial[name][k][part]):
                return name
        diffs = {name: _max_diff(got, serial[name][k][part]) for name in ("A", "B")}
        failures.append(f"{what}, input {k}: neither weights A nor B (max |diff| {diffs})")
        return None

    def met_everything():
        with seen_lock:
            return seen["A"] > 0 and seen["B"] > 0 and seen["backward"] > 0

    def caller(t):
        try:
            extra_until = time.monotonic() + CHURN_EXTRA_SECONDS
            i = 0
            while i < CHURN_CALLS or (not met_everything() and time.monotonic() < extra_until):
                i += 1
                k = (t + i) % CHURN_INPUTS
                if i % 2 == 0:
                    name = which(infer(k), 0, k, "inference")
                else:
                    tape, recorded = train(k)
                    name = which(recorded, 1, k, "record")
                    try:
                        got = grads(tape, k)
                    except RuntimeError as exc:  # the weights were replaced since the record: must say so
                        assert "changed" in str(exc), exc
                        count("stale backward")
                    else:
                        count("backward")
                        if name is not None and not _same(got, serial[name][k][2]):
                            failures.append(f"backward, input {k}: not the gradients of weights {name}")
                if name is not None:
                    count(name)
        except BaseException as exc:  # reported by the main thread
            failures.append(f"caller {t}: {type(exc).__name__}: {exc}")

    def cycle(steps, pauses):
        try:
            i = 0
            while not done.is_set():
                steps[i % len(steps)]()
                done.wait(pauses[i % len(pauses)])  # lets the callers' threads have the GIL
                i += 1
        except BaseException as exc:
            failures.append(f"changer: {type(exc).__name__}: {exc}")

    thread_counts = [lambda n=n: fr.set_num_threads(n) for n in (1, 2, 3, 4)]
    loads = [lambda sd=sd: layer.load_state_dict(sd) for sd in (weights["A"], weights["B"])]
    callers = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(CHURN_CALLERS)]
    # The weights change in bursts (during calls) and then pause for longer than a record + backward
    # (several times longer: the callers share the cores), so that some tapes stay current until their
    # backward.
    long_pause = max(0.1, 8 * slowest_training)
    changers_ = [
        threading.Thread(target=cycle, args=args, daemon=True)
        for args in ((thread_counts, [0.0005]), (loads, [0.0005] * 4 + [long_pause]), (changes, [0.0005]))
    ]
    for th in callers + changers_:
        th.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for th in callers:
        th.join(max(0.0, deadline - time.monotonic()))
    done.set()
    for th in changers_:
        th.join(max(1.0, deadline - time.monotonic()))
    alive = [th.name for th in callers + changers_ if th.is_alive()]
    if alive:
        print(f"deadlock: threads {alive} still running after {JOIN_TIMEOUT} s", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)  # the stuck threads would hold up a normal exit
    print(json.dumps(seen), flush=True)
    if failures:
        print("\n".join(failures[:20]), file=sys.stderr)
        sys.exit(1)


def _run_churn(case: str, batch: int, changers: str) -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import test_threads as t; "
        f"t._churn_main({case!r}, {batch}, {changers!r})"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-X", "faulthandler", "-c", code],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"hung for {CHILD_TIMEOUT} s: {exc.stderr!s:.3000}") from None
    status = proc.returncode
    if status < 0:
        meaning = f"killed by {signal.Signals(-status).name}"
    else:
        meaning = {0: "ok", 1: "wrong answers or an error", 3: "deadlock"}.get(status, "exit status")
    assert status == 0, f"{meaning} ({status}):\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("batch", [1, 40], ids=["N1", "N40"])
@pytest.mark.parametrize("case", list(CHURN))
def test_answers_while_threads_weights_and_switches_change(case, batch):
    """Thread counts 1-4, weights A/B and the claim / rows-per-member switches changing during the calls."""
    seen = _run_churn(case, batch, "tuning")
    # Both weight sets were met, and some backward passes ran (the rest refused stale tapes).
    assert seen["A"] > 0 and seen["B"] > 0 and seen["backward"] > 0, seen


@pytest.mark.parametrize("batch", [1, 40], ids=["N1", "N40"])
@pytest.mark.parametrize("case", ["lstm", "gru-L2-bidir"])
def test_answers_while_the_projection_switch_changes(case, batch):
    """force_projection_per_step flipped during calls (as well as thread counts and weights). The switch
    must be read once per call: it decides both the size of the input-projection buffer and how the
    call fills it."""
    seen = _run_churn(case, batch, "projection")
    assert seen["A"] > 0 and seen["B"] > 0 and seen["backward"] > 0, seen
