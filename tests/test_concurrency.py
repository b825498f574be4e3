"""Layers large enough to use the kernels' worker pool, called from several Python threads at once,
give exactly the answers of serial calls (the work split is fixed by the weights' packing, so a call
that finds the pool busy and runs on its own thread computes the same numbers)."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn._testing import get_tuning, set_tuning


@pytest.mark.parametrize(
    "make",
    [
        lambda: fr.LSTM(32, 160, seed=0),
        lambda: fr.GRU(32, 160, num_layers=2, bidirectional=True, seed=0),
        lambda: fr.LSTM(32, 160, num_layers=2, bidirectional=True, peephole=True, seed=0),
    ],
    ids=["lstm", "gru-L2-bidir", "lstm-peephole-L2-bidir"],
)
@pytest.mark.parametrize("batch", [1, 8], ids=["N1", "N8"])
def test_concurrent_calls_equal_serial_calls(make, batch, two_threads):
    layer = make()
    rng = np.random.default_rng(batch)
    xs = [rng.standard_normal((20, batch, 32)).astype(np.float32) for _ in range(12)]
    gys = [rng.standard_normal(layer(x)[0].shape).astype(np.float32) for x in xs]

    def run(k):
        y = layer(xs[k])[0]
        tape = layer.record(xs[k])
        g = tape.backward(gys[k])
        return y, g.input, g.params

    serial = [run(k) for k in range(len(xs))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(run, range(len(xs))))
    for (y_s, gx_s, gp_s), (y_p, gx_p, gp_p) in zip(serial, parallel):
        np.testing.assert_array_equal(y_p, y_s)
        np.testing.assert_array_equal(gx_p, gx_s)
        for name in gp_s:
            np.testing.assert_array_equal(gp_p[name], gp_s[name])


def test_one_and_two_threads_agree_bit_for_bit():
    layer = fr.LSTM(32, 256, num_layers=2, seed=1)
    x = np.random.default_rng(0).standard_normal((15, 4, 32)).astype(np.float32)
    before = fr.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            fr.set_num_threads(threads)
            tape = layer.record(x)
            g = tape.backward(np.ones_like(tape.output))
            results.append((tape.output, g.input, *g.params.values()))
    finally:
        fr.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


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
# Each case runs in a subprocess (this module's _churn_main), so that a crash or a deadlock fails that
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


def _flat(result):
    """Every array of a (nested) result in a fixed order."""
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, dict):
        return [a for key in sorted(result) for a in _flat(result[key])]
    if isinstance(result, (tuple, list)):
        return [a for item in result for a in _flat(item)]
    raise TypeError(type(result))


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
        return _flat(layer(xs[k]))

    def train(k):
        tape = layer.record(xs[k])
        return tape, _flat((tape.output, tape.state))

    def grads(tape, k):
        g = tape.backward(gys[k])
        return _flat((g.input, g.state, g.params))

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
        f"import sys; sys.path.insert(0, {here!r}); import test_concurrency as t; "
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
