"""Regression tests for faults found by sanitizers and by use: each failed before its fix.

- A two-layer float64 training forward read past a vector of slice boundaries (found with
  _GLIBCXX_ASSERTIONS; a normal build read it silently). Here it must match the reference; the sanitizer
  pass of CI runs this file under AddressSanitizer, where the read aborts.
- NaN or inf in x past a sequence's end (padding from np.empty, or NaN as a pad marker) made every
  weight_ih gradient NaN: backward's weight gradient is a product over all T*N rows.
- Ctrl-C during a long call was ignored until the call ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import reference


def test_two_layer_float64_record_matches_reference(assert_close) -> None:
    lstm = fr.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    tape = lstm.record(x)
    y_ref, h_ref, c_ref, cache = reference.forward(lstm.config, lstm.state_dict(), x)
    assert_close(tape.output, y_ref, np.float64, "y")
    grads = tape.backward(np.ones_like(tape.output))
    _, _, _, grads_ref = reference.backward(cache, np.ones_like(y_ref))
    for name, g in grads.params.items():
        assert_close(g, grads_ref[name], np.float64, name)


@pytest.mark.parametrize("pad", ["nan", "inf", "empty"])
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: fr.LSTM(5, 6, num_layers=2, bidirectional=True, seed=1), id="lstm-bi-2"),
        pytest.param(lambda: fr.GRU(5, 6, seed=2), id="gru"),
        pytest.param(lambda: fr.GRU(5, 6, linear_before_reset=False, seed=3), id="gru-reset-before"),
        pytest.param(lambda: fr.RNN(5, 6, nonlinearity="relu", seed=4), id="rnn-relu"),
        pytest.param(lambda: fr.LSTM(5, 6, proj_size=3, seed=5), id="lstm-proj"),
    ],
)
def test_padding_never_reaches_the_gradients(make, pad: str) -> None:
    layer = make()
    rng = np.random.default_rng(7)
    steps, batch = 6, 3
    lengths = np.array([6, 2, 4])
    x_clean = rng.standard_normal((steps, batch, 5), dtype=np.float32)
    pad_mask = np.arange(steps)[:, None] >= lengths[None, :]  # (T, N): past each sequence's end
    x_clean[pad_mask] = 0.0
    if pad == "empty":
        x_dirty = np.empty_like(x_clean)
        x_dirty[...] = np.float32(np.nan)  # what np.empty may hold, made certain
    else:
        x_dirty = np.full_like(x_clean, np.float32(pad))
    x_dirty[~pad_mask] = x_clean[~pad_mask]
    x_given = x_dirty.copy()

    tape_clean = layer.record(x_clean, lengths=lengths)
    tape_dirty = layer.record(x_dirty, lengths=lengths)
    np.testing.assert_array_equal(tape_dirty.output, tape_clean.output)
    grad_y = rng.standard_normal(tape_clean.output.shape, dtype=np.float32)
    g_clean = tape_clean.backward(grad_y)
    g_dirty = tape_dirty.backward(grad_y)
    for name, g in g_dirty.params.items():
        assert np.all(np.isfinite(g)), f"{name}: non-finite gradient from the padding"
        np.testing.assert_array_equal(g, g_clean.params[name], err_msg=name)
    np.testing.assert_array_equal(g_dirty.input, g_clean.input)
    # The caller's input is left as it was: the kernels zero their own copy.
    np.testing.assert_array_equal(x_dirty, x_given)


# -- Ctrl-C ----------------------------------------------------------------------------------------

_SANITIZED = any(name in os.environ.get("LD_PRELOAD", "") for name in ("libasan", "libtsan"))
# A call of seconds: T = 200,000 (LSTM 64 -> 128, batch 2); a tenth of that under a sanitizer, which
# runs the same call about ten times slower.
_INTERRUPTED_STEPS = 20_000 if _SANITIZED else 200_000

_INTERRUPTED_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import fusedrnn as fr

    what, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fr.set_num_threads(threads)
    layer = fr.LSTM(64, 128, seed=0)
    x = np.random.default_rng(0).standard_normal((steps, 2, 64), dtype=np.float32)
    short = x[:50]
    y_before = layer(short)[0]
    tape = layer.record(x) if what == "backward" else None
    # Made before "start": numpy's own work (0.5 s for this array here) does not look at signals.
    grad = np.ones_like(tape.output) if what == "backward" else None
    print("start", flush=True)
    try:
        if what == "forward":
            layer(x)
        elif what == "record":
            layer.record(x)
        else:
            tape.backward(grad)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
    # The layer is still usable and gives the same answer.
    print("usable", bool(np.array_equal(layer(short)[0], y_before)), flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("what", ["forward", "record", "backward"])
def test_ctrl_c_stops_a_long_call(what: str, threads: int) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_CHILD, what, str(threads), str(_INTERRUPTED_STEPS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "start", f"child: {line!r} {child.stderr.read() if child.stderr else ''}"
        time.sleep(0.3)  # well inside the call, which takes seconds
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    lines = out.split("\n")
    assert lines[0].startswith("interrupted"), f"the call was not interrupted: {out!r} {err!r}"
    latency = float(lines[0].split()[1]) - sent
    # The kernels poll every 20 ms; 100 ms is the promise, with room for a busy machine. Under a
    # sanitizer (CI's sanitizer passes preload its runtime) everything runs several times slower, so
    # only the interrupt itself is checked there.
    if not _SANITIZED:
        assert latency < 0.1, f"KeyboardInterrupt {latency * 1000:.0f} ms after SIGINT"
    assert lines[1] == "usable True", f"after the interrupt: {out!r} {err!r}"
    assert child.returncode == 0, err
