"""Memory limits and arrays at the edges: each test failed before its fix.

- The memory check of a call counted x, y and the gates but not the tape's h, c and copy of x nor the
  input projection of every step (about half of what record allocates); backward had no check at all.
- A buffer the kernels could not get raised ``MemoryError('std::bad_alloc')``, naming no size.
- C-contiguous arrays that are not aligned to their item size (a view into a byte buffer) reached the
  kernels as they were: misaligned loads, undefined behaviour however well the CPU takes them. They are
  now copied to aligned memory first; a stream's state, updated in place, must be aligned.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import _validation, reference
from fusedrnn._testing import tuning

_SANITIZED = any(name in os.environ.get("LD_PRELOAD", "") for name in ("libasan", "libtsan"))


def _available(monkeypatch: pytest.MonkeyPatch, nbytes: int | None) -> None:
    monkeypatch.setattr(_validation, "available_memory", lambda: nbytes)


# -- the checks before a call ----------------------------------------------------------------------


def test_record_counts_the_whole_tape(monkeypatch: pytest.MonkeyPatch) -> None:
    # LSTM 8 -> 256, T = 300,000, N = 1 in float32: x, y and the gates are 1.5 GB, but record allocates
    # 2.2 GB (the tape's h, c and x as well).
    lstm = fr.LSTM(8, 256, seed=0)
    x = np.zeros((300_000, 1, 8), dtype=np.float32)
    _available(monkeypatch, 2 << 30)
    with pytest.raises(MemoryError, match=r"record on x of shape \(300000, 1, 8\) needs at least 2,1"):
        lstm.record(x)


def test_backward_is_checked_before_it_allocates(monkeypatch: pytest.MonkeyPatch) -> None:
    lstm = fr.LSTM(8, 64, seed=0)
    x = np.zeros((200_000, 1, 8), dtype=np.float32)
    tape = lstm.record(x)
    grad = np.ones_like(tape.output)
    # backward needs dx and two gradients of the gates per row: 416 MB
    _available(monkeypatch, 300 << 20)
    with pytest.raises(MemoryError, match=r"backward of a tape of 200000 steps and 1 sequences needs"):
        tape.backward(grad)
    _available(monkeypatch, 1 << 40)
    assert np.all(np.isfinite(tape.backward(grad).input))


_PEAK_CHILD = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    import fusedrnn as fr

    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    cell, training = sys.argv[1], sys.argv[2] == "record"
    layer = {"lstm": lambda: fr.LSTM(8, 256, num_layers=2, seed=0),
             "gru": lambda: fr.GRU(8, 256, bidirectional=True, seed=0)}[cell]()
    x = np.random.default_rng(0).standard_normal((20_000, 4, 8), dtype=np.float32)
    layer(x[:2])  # every library and the pool loaded
    before = rss()
    peak, done = [before], threading.Event()

    def sample():  # the kernels release the GIL: the resident size, every millisecond of the call
        while not done.wait(0.001):
            peak.append(rss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    result = layer.record(x) if training else layer(x)
    peak.append(rss())
    done.set()
    sampler.join()
    estimate = layer._call_bytes(20_000, 4, training, np.dtype(np.float32))
    output = result.output if training else result[0]
    print(max(peak) - before, estimate, output.nbytes)
    """
)


def _peak(cell: str, what: str) -> tuple[int, int, int]:
    """(peak RSS growth, the layer's estimate, the output's bytes) of _PEAK_CHILD in a fresh interpreter."""
    argv = [sys.executable, "-c", _PEAK_CHILD, cell, what]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    grown, estimate, output_bytes = map(int, out.split())
    return grown, estimate, output_bytes


@pytest.mark.skipif(_SANITIZED or sys.platform != "linux", reason="peak RSS of a plain build on Linux")
@pytest.mark.parametrize("what", ["call", "record"])
@pytest.mark.parametrize("cell", [pytest.param("lstm", marks=pytest.mark.slow), "gru"])
def test_the_estimate_is_close_to_what_a_call_allocates(cell: str, what: str) -> None:
    grown, estimate, _ = _peak(cell, what)
    # Not below what the call really took (else the check lets the OS kill the process), nor far above
    # (else it refuses calls that would fit); here it is within 1 %.
    assert 0.95 * grown <= estimate <= 1.2 * grown, f"estimate {estimate:,} bytes, peak grew {grown:,} bytes"


@pytest.mark.skipif(_SANITIZED or sys.platform != "linux", reason="peak RSS of a plain build on Linux")
def test_inference_at_small_batch_needs_little_beyond_its_output() -> None:
    # A bidirectional GRU 8 -> 256 at batch 4, T = 20,000: y is 164 MB. The input projection of every
    # step took 3x that again; in blocks of steps it takes 2 x 8 MB.
    grown, _, output_bytes = _peak("gru", "call")
    assert grown <= 1.3 * output_bytes, f"peak grew {grown:,} bytes for an output of {output_bytes:,}"


# -- a failed allocation in the kernels -------------------------------------------------------------

_LIMITED_CHILD = textwrap.dedent(
    """
    import resource
    import numpy as np
    import fusedrnn as fr
    from fusedrnn import _validation
    _validation.available_memory = lambda: None  # only the kernels' own allocation can fail
    lstm = fr.LSTM(8, 256, seed=0)
    x = np.zeros((300_000, 1, 8), dtype=np.float32)
    lstm(x[:10])
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    # room for y (0.3 GB), not for the gates the tape keeps (1.2 GB)
    resource.setrlimit(resource.RLIMIT_AS, (size + (700 << 20), resource.RLIM_INFINITY))
    try:
        lstm.record(x)
    except MemoryError as e:
        print("MemoryError:", e)
    """
)


@pytest.mark.skipif(
    _SANITIZED or sys.platform != "linux", reason="a sanitizer reserves terabytes of address space"
)
def test_a_failed_allocation_names_its_size() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LIMITED_CHILD], capture_output=True, text=True, timeout=120
    ).stdout.strip()
    assert out.startswith("MemoryError: could not allocate a work buffer of "), out
    assert " bytes (1.1 GiB)" in out, out


# -- misaligned arrays ------------------------------------------------------------------------------


def _misaligned(a: np.ndarray) -> np.ndarray:
    """The same values, C-contiguous, at an address that is not a multiple of the item size."""
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and not out.flags.aligned
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_arrays_give_the_same_answers(dtype) -> None:
    rng = np.random.default_rng(3)
    lstm = fr.LSTM(5, 7, num_layers=2, dtype=dtype, seed=1)
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    h0 = rng.standard_normal((2, 3, 7)).astype(dtype)
    c0 = rng.standard_normal((2, 3, 7)).astype(dtype)
    y, (h, c) = lstm(x, (h0, c0))
    y_m, (h_m, c_m) = lstm(_misaligned(x), (_misaligned(h0), _misaligned(c0)))
    np.testing.assert_array_equal(y_m, y)
    np.testing.assert_array_equal(h_m, h)
    np.testing.assert_array_equal(c_m, c)

    grad = rng.standard_normal(y.shape).astype(dtype)
    g = lstm.record(x).backward(grad)
    g_m = lstm.record(_misaligned(x)).backward(_misaligned(grad))
    np.testing.assert_array_equal(g_m.input, g.input)
    for name in g.params:
        np.testing.assert_array_equal(g_m.params[name], g.params[name], err_msg=name)

    copy = fr.LSTM(5, 7, num_layers=2, dtype=dtype, seed=2)
    copy.load_state_dict({name: _misaligned(value) for name, value in lstm.state_dict().items()})
    np.testing.assert_array_equal(copy(x, (h0, c0))[0], y)

    stream = lstm.stream(3)
    np.testing.assert_array_equal(stream.step(_misaligned(x[0])), lstm(x[:1])[0][0])


# -- what the OS says is available ------------------------------------------------------------------


@pytest.mark.parametrize(
    "files, expected",
    [
        ({}, 8 << 30),  # no cgroup limit: MemAvailable + SwapFree
        ({"/sys/fs/cgroup/memory.max": 3 << 30, "/sys/fs/cgroup/memory.current": 1 << 30}, 2 << 30),  # v2
        (
            {
                "/sys/fs/cgroup/memory/memory.limit_in_bytes": 5 << 30,
                "/sys/fs/cgroup/memory/memory.usage_in_bytes": 2 << 30,
            },
            3 << 30,
        ),  # v1
        ({"/sys/fs/cgroup/memory/memory.limit_in_bytes": (1 << 63) - 4096}, 8 << 30),  # v1 without a limit
    ],
    ids=["none", "cgroup-v2", "cgroup-v1", "cgroup-v1-unlimited"],
)
def test_available_memory_reads_cgroup_v1_and_v2(monkeypatch: pytest.MonkeyPatch, files, expected) -> None:
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("needs /proc/meminfo")
    monkeypatch.setattr(_validation, "_read_int", lambda path: files.get(path))
    monkeypatch.setattr(_validation, "_meminfo_available", lambda: 8 << 30)
    assert _validation.available_memory() == expected


# -- the input projection in blocks of steps --------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "make, steps, batch",
    [
        (lambda dtype: fr.LSTM(8, 256, dtype=dtype, seed=0), 2100, 1),  # blocks of 2048 steps and one of 52
        (lambda dtype: fr.GRU(8, 128, bidirectional=True, dtype=dtype, seed=1), 1500, 4),
        (lambda dtype: fr.GRU(8, 64, linear_before_reset=False, num_layers=2, dtype=dtype, seed=2), 3000, 12),
        (lambda dtype: fr.RNN(8, 512, dtype=dtype, seed=3), 9000, 1),
    ],
    ids=["lstm-N1", "gru-bidir-N4", "gru-reset-before-L2-N12", "rnn-N1"],
)
def test_projection_in_blocks_matches_one_step_at_a_time(make, steps, batch, dtype, assert_close) -> None:
    """Long sequences at small batch project their input in blocks of steps: the same bits as one step
    at a time where the panel kernels run (float32 on AVX2 and AVX-512), and the reference's answer
    everywhere."""
    layer = make(dtype)
    rng = np.random.default_rng(steps)
    x = rng.standard_normal((steps, batch, 8)).astype(dtype)
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[0] = steps
    y, h = layer(x, lengths=lengths)[:2]
    with tuning(projection_per_step=True):
        y_step, h_step = layer(x, lengths=lengths)[:2]
    if dtype == np.float32 and fr._core.isa != "baseline":
        np.testing.assert_array_equal(y, y_step)
    y_ref = reference.forward(layer.config, layer.state_dict(), x.astype(np.float64), lengths=lengths)[0]
    assert_close(y, y_ref, dtype, "y")
