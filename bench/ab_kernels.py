"""Interleaved A/B timing of two builds of the compiled kernels, in one process.

    python bench/ab_kernels.py OLD_DIR [--threads 1 2] [--rounds 15] [--only GRU] [--a-isa avx2]

OLD_DIR holds another build's ``_core_<isa>*.so`` (copied from its build directory). The installed
fusedrnn is B; A is loaded from OLD_DIR under a package name of its own (the classes are module-local,
so both live side by side; under B's own name pybind11 3 hands back B's module). Every workload checks
that A and B give the same answer before timing, then runs A and B alternately; the table gives
medians and B's time over A's. ``--a-isa`` takes A from another variant than B's: with the installed
package's own directory as OLD_DIR, two variants of one build (``--a-isa avx2`` against the avx512
kernels the loader picked).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.machinery
import importlib.util
import os
import statistics
import time
from typing import Any, Callable

import numpy as np

import fusedrnn as fr
from fusedrnn import _core
from fusedrnn._runtime import compiled_config


def load_other_build(directory: str, isa: str) -> Any:
    if directory == "same":  # A/A: the harness's own noise and bias
        return _core
    name = f"fusedrnn_ab_a._core_{isa}"
    (path,) = glob.glob(f"{directory}/_core_{isa}.*so")
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    if module is getattr(_core, "_module", None) or not os.path.samefile(module.__file__, path):
        raise RuntimeError(f"loading {path} gave back another module ({module.__file__}): A would be B")
    return module


def make_stack(module: Any, layer: Any) -> Any:
    """The compiled stack of `layer`'s configuration in `module`, with its weights."""
    c = layer.config
    double = layer.dtype == np.float64
    if hasattr(module, "StackConfig"):  # bindings that take a configuration object
        try:
            config = compiled_config(c, module)
        except TypeError:  # an older build, without options added since: pass only what is not a default
            fields = dataclasses.fields(c)
            config = module.StackConfig(
                **{f.name: getattr(c, f.name) for f in fields if getattr(c, f.name) != f.default}
            )
        stack = module.stacks["float64" if double else "float32"](config)
    else:
        stack = module.Stack(
            c.cell,
            c.input_size,
            c.hidden_size,
            c.num_layers,
            c.bias,
            c.bidirectional,
            c.proj_size,
            c.linear_before_reset,
            double,
            residual=c.residual,
            peephole=c.peephole,
            clip=c.clip,
            input_forget=c.input_forget,
            hard_gates=c.hard_gates,
        )
    stack.set_weights(list(layer.state_dict().values()))
    return stack


WORKLOADS: dict[str, tuple[Callable[[], Any], tuple[int, int], bool]] = {
    # name: (layer, (T, N), training)
    "LSTM 128->256 T=100 N=1": (lambda: fr.LSTM(128, 256, seed=0), (100, 1), False),
    "LSTM 256->256 T=100 N=64": (lambda: fr.LSTM(256, 256, seed=0), (100, 64), False),
    "GRU 128->256 T=100 N=1": (lambda: fr.GRU(128, 256, seed=0), (100, 1), False),
    "biLSTM 2x 128->256 T=100 N=8": (
        lambda: fr.LSTM(128, 256, num_layers=2, bidirectional=True, seed=0),
        (100, 8),
        False,
    ),
    "LSTM train 128->256 T=50 N=32": (lambda: fr.LSTM(128, 256, seed=0), (50, 32), True),
    "GRU train 128->256 T=50 N=32": (lambda: fr.GRU(128, 256, seed=0), (50, 32), True),
}


def runner(stack: Any, x: np.ndarray, training: bool) -> Callable[[], Any]:
    if not training:
        return lambda: stack.forward(x)[0]
    grad = np.ones((x.shape[0], x.shape[1], stack.param_shapes()[1][1]), dtype=x.dtype)

    def train() -> Any:
        y, _, _, saved = stack.forward_train(x)
        return stack.backward(saved, grad)[0]

    return train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old_dir")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", default="", help="time only the workloads whose name contains this")
    parser.add_argument("--a-isa", default=_core.isa, help="A's kernel variant (default: B's)")
    args = parser.parse_args()
    old = load_other_build(args.old_dir, args.a_isa)
    a_isa = getattr(old, "isa", args.a_isa)
    print(
        f"kernels: A {a_isa}, B {_core.isa}; A = {args.old_dir}, B = installed; "
        f"medians of {args.rounds} interleaved rounds"
    )
    print(f"{'workload':34} {'threads':>7} {'A ms':>8} {'B ms':>8} {'B/A':>6}")
    for threads in args.threads:
        fr.set_num_threads(threads)
        old.set_num_threads(threads)
        for name, (make, (steps, batch), training) in WORKLOADS.items():
            if args.only not in name:
                continue
            layer = make()
            shape = (steps, batch, layer.config.input_size)
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            run_a, run_b = (runner(make_stack(m, layer), x, training) for m in (old, _core))
            # Two builds may round differently where Eigen computes (its packet math and general products
            # follow the instruction set the build allows): the absolute tolerance is scaled by the
            # answer's size, as the tests hold the kernels to the reference.
            answer_a, answer_b = run_a(), run_b()
            scale = max(1.0, float(np.abs(answer_b).max()))
            np.testing.assert_allclose(answer_a, answer_b, rtol=1e-5, atol=1e-6 * scale)
            times: dict[str, list[float]] = {"a": [], "b": []}
            for r in range(args.rounds + 2):  # two warm-up rounds
                order = (("a", run_a), ("b", run_b)) if r % 2 == 0 else (("b", run_b), ("a", run_a))
                for key, run in order:
                    start = time.perf_counter()
                    run()
                    if r >= 2:
                        times[key].append(time.perf_counter() - start)
            a, b = statistics.median(times["a"]) * 1e3, statistics.median(times["b"]) * 1e3
            print(f"{name:34} {threads:>7} {a:8.3f} {b:8.3f} {b / a:6.3f}")


if __name__ == "__main__":
    main()
