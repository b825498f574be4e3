"""Layers large enough to use the kernels' worker pool, called from several Python threads at once,
give exactly the answers of serial calls (the work split is fixed by the weights' packing, so a call
that finds the pool busy and runs on its own thread computes the same numbers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fusedrnn as fr


@pytest.fixture
def two_threads():
    before = fr.get_num_threads()
    fr.set_num_threads(2)
    yield
    fr.set_num_threads(before)


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
