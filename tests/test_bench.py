"""The benchmark (``python -m fusedrnn bench``) on tiny shapes: table and JSON structure, answer checks, the
user's own workload from the command line, the default report's width, progress and the busy-machine mark."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json

import numpy as np
import pytest

from fusedrnn import bench
from fusedrnn.__main__ import main
from fusedrnn.bench import (
    anchors,
    answers,
    machine,
    memory,
    optional,
    plotting,
    progress,
    report,
    timing,
    workloads,
)

TINY = (
    bench.Workload("lstm", "inference", 4, 2, 3, 5),
    bench.Workload("gru", "training", 3, 1, 3, 5),
)
ROW_KEYS = {
    "workload",
    "cell",
    "mode",
    "T",
    "N",
    "I",
    "H",
    "dtype",
    "threads",
    "impl",
    "median_ms",
    "p90_ms",
    "samples_ms",
    "min_ms",
    "runs",
    "ratio",
    "verdict",
    "max_abs_diff",
    "layers",
    "bidirectional",
    "target",
    "target_met",
    "gflops",
    "first_call_ms",
    "nonlinearity",
    "proj_size",
    "lengths",
}
REPORT_WIDTH = 100  # columns: no line of the default report is wider


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_tiny(**kwargs):
    out = io.StringIO()
    kwargs.setdefault("anchors", ["numpy"])
    kwargs.setdefault("repeat", 2)
    result = bench.run(threads=[1], warmup=1, workloads=TINY, out=out, **kwargs)
    return result, out.getvalue()


def p90_by_rank(samples):
    """The 90th percentile, interpolated between the two nearest ranks, written out."""
    ordered = sorted(samples)
    rank = 0.9 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


def assert_fits(text, width=REPORT_WIDTH):
    wide = [line for line in text.splitlines() if len(line) > width]
    assert wide == [], f"lines wider than {width} columns: {wide}"


def test_rows_and_table_against_numpy(tmp_path):
    path = tmp_path / "bench.json"
    result, text = run_tiny(json_path=str(path), repeat=5)
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    rows = result["rows"]
    assert [(r["workload"], r["impl"]) for r in rows] == [
        (w.name, impl) for w in TINY for impl in ("fusedrnn", "numpy")
    ]
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["threads"] == 1 and r["dtype"] == "float32" and r["runs"] >= 1
        assert r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"]
        assert len(r["samples_ms"]) == r["runs"]
        assert r["median_ms"] == pytest.approx(float(np.median(r["samples_ms"])))
        assert r["p90_ms"] == pytest.approx(p90_by_rank(r["samples_ms"]))
        assert r["median_ms"] <= r["p90_ms"] <= max(r["samples_ms"])
        assert r["gflops"] > 0 and r["target"] is None and r["target_met"] is None
        if r["impl"] == "fusedrnn":
            assert r["ratio"] is None and r["max_abs_diff"] is None and r["verdict"] is None
            assert r["first_call_ms"] > 0
        else:
            assert r["ratio"] > 0
            assert r["verdict"] == ("fusedrnn faster" if r["ratio"] >= 1 else "fusedrnn slower")
            assert 0 <= r["max_abs_diff"] < 1e-4
    assert result["meta"]["threads"] == [1]
    # The default report: one table of p50 and p90 per row, under short names.
    assert "ratio = anchor p50 / fusedrnn p50" in text
    header = next(line for line in text.splitlines() if line.startswith("workload"))
    assert header.split() == ["workload", "threads", "impl", "p50", "ms", "p90", "ms", "ratio", "target"]
    for w in TINY:
        assert w.short_name in text and w.name not in text
    for r in rows:
        assert f"{r['p90_ms']:.3f}" in text
    assert ("fusedrnn was slower than the anchor in" in text) or (
        "faster than the anchor in every row" in text
    )
    assert "answers: every anchor matched fusedrnn's" in text
    assert "--verbose adds" in text and "large batch" not in text and "threads = 1" not in text
    assert_fits(text)
    assert bench.format_table([]) == ""


def test_verbose_report_has_the_detail():
    result, text = run_tiny(verbose=True)
    assert "threads = 1" in text and "ratio = anchor median / fusedrnn median" in text
    assert "p90 ms" in text and "max|diff|" in text and "first call:" in text and "batch 1:" in text
    for w in TINY:
        assert w.name in text
    assert ("fusedrnn is SLOWER" in text) or ("faster than every anchor" in text)
    assert "note: weights: from" in text and "--verbose adds" not in text


def test_percentile_interpolates_between_ranks():
    assert timing.percentile([float(v) for v in range(1, 11)], 90) == pytest.approx(9.1)
    assert timing.percentile([3.0, 1.0, 2.0], 90) == pytest.approx(2.8)
    assert timing.percentile([5.0], 90) == 5.0


def test_default_rounds_shrink_on_slow_workloads(monkeypatch):
    """Without an explicit repeat, a workload over its time budget gets fewer rounds (MIN_ROUNDS at least),
    and the notes say so."""
    monkeypatch.setattr(timing, "ROUND_BUDGET_S", 0.0)
    result = bench.run(threads=[1], workloads=TINY[:1], anchors=["numpy"], out=io.StringIO())
    assert [r["runs"] for r in result["rows"] if r["impl"] == "fusedrnn"] == [timing.MIN_ROUNDS]
    assert any(f"{timing.MIN_ROUNDS} rounds after 1 warm-up" in n for n in result["notes"])


def test_wrong_answer_is_an_error(monkeypatch):
    """An anchor whose answer is off (here by 0.01 in one output entry) stops the benchmark."""

    def broken(problem, threads):
        runner = anchors.ANCHOR_FACTORIES["numpy"](problem, threads)
        answer = runner.answer

        def bad_answer(res):
            out = {k: np.array(v, copy=True) for k, v in answer(res).items()}
            out["output"].flat[0] += 0.01
            return out

        return anchors.Runner("broken", runner.call, bad_answer)

    monkeypatch.setitem(anchors.ANCHOR_FACTORIES, "broken", broken)
    with pytest.raises(bench.AnswerMismatch, match="broken differs from fusedrnn in output"):
        run_tiny(anchors=["broken"])


def test_check_answer_rejects_missing_and_misshapen():
    w = TINY[0]
    want = {"output": np.zeros((4, 2, 5), np.float32)}
    with pytest.raises(bench.AnswerMismatch, match="no 'output'"):
        answers.check_answer(w, "x", {}, want)
    with pytest.raises(bench.AnswerMismatch, match="shape"):
        answers.check_answer(w, "x", {"output": np.zeros((4, 5), np.float32)}, want)
    with pytest.raises(bench.AnswerMismatch, match="not finite"):
        answers.check_answer(w, "x", {"output": np.full((4, 2, 5), np.nan, np.float32)}, want)
    assert answers.check_answer(w, "x", {"output": want["output"] + 1e-7}, want)[0] == pytest.approx(1e-7)


def test_unknown_anchor_and_bad_threads():
    with pytest.raises(ValueError, match="anchors"):
        run_tiny(anchors=["nonesuch"])
    with pytest.raises(ValueError, match="threads"):
        bench.run(threads=[0], workloads=TINY, anchors=["numpy"], out=io.StringIO())


@pytest.mark.skipif(not (has("onnx") and has("onnxruntime")), reason="onnx and onnxruntime not installed")
def test_onnx_graph_built_from_weights_without_torch(monkeypatch):
    """Without PyTorch: fusedrnn's own weights, and ONNX Runtime runs a graph built with onnx.helper."""
    real = optional.try_import
    monkeypatch.setattr(optional, "try_import", lambda name: None if name == "torch" else real(name))
    workloads = (
        bench.Workload("lstm", "inference", 4, 2, 3, 5),
        bench.Workload("gru", "inference", 4, 3, 3, 5),
        bench.Workload("lstm", "inference", 4, 2, 3, 5, layers=2, bidirectional=True),
        bench.Workload("gru", "inference", 4, 1, 3, 5, layers=3, bidirectional=True),
    )
    out = io.StringIO()
    result = bench.run(threads=[1], repeat=1, warmup=0, workloads=workloads, out=out)
    assert result["meta"]["weights_from"] == "fusedrnn"
    assert result["meta"]["onnx_source"] == ["onnx.helper"]
    impls = {(r["workload"], r["impl"]) for r in result["rows"]}
    for w in workloads:
        assert (w.name, "onnxruntime") in impls
        assert (w.name, "torch") not in impls
    assert "torch: skipped" in out.getvalue()


def test_cli_quick(tmp_path, capsys):
    """The command line, as a user runs it, with every installed anchor."""
    path = tmp_path / "quick.json"
    assert main(["bench", "--quick", "--threads", "1", "--repeat", "1", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    rows = json.loads(path.read_text())["rows"]
    impls = {r["impl"] for r in rows}
    assert {"fusedrnn", "numpy"} <= impls
    assert ("torch" in impls) == has("torch")
    assert ("onnxruntime" in impls) == (has("onnxruntime") and has("onnx"))
    assert {r["workload"] for r in rows} == {w.name for w in bench.QUICK_WORKLOADS}
    assert {"rnn_tanh", "rnn_relu"} <= {r["cell"] for r in rows}
    assert f"wrote {path}" in text
    assert_fits(text)  # the default report, with every anchor and the targets
    # One step at a time against torch's cells, with its two targets checked.
    result = json.loads(path.read_text())
    stream = {(r["kind"], r["impl"]) for r in result["stream"]}
    wanted = {("lstm", "stream.step"), ("lstm", "cell"), ("lstm", "arithmetic"), ("gru", "stream.step")}
    assert wanted <= stream
    assert (("lstm", "torch cell") in stream) == has("torch")
    kinds = {c["kind"] for c in result["targets"]}
    assert "stream_overhead" in kinds and ("stream_vs_torch" in kinds) == has("torch")
    assert "One step at N=1, H=128" not in text and "one step at a time" in text  # behind --verbose


BAD_ARGV = {
    "threads0": ["bench", "--threads", "0"],
    "threads-a": ["bench", "--threads", "a"],
    "repeat0": ["bench", "--repeat", "0"],
    "no-command": [],
}


@pytest.mark.parametrize("argv", BAD_ARGV.values(), ids=BAD_ARGV.keys())
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


# ---- the performance targets and what the rows are measured against ----------------------------------

# The performance targets: (cell, mode, T, N, I, H, layers, bidirectional) -> {anchor: (at 1, at 2 threads)}.
ISSUE_TARGETS = {
    ("lstm", "inference", 100, 1, 128, 256, 1, False): {"onnxruntime": (1.0, 1.5), "torch": (1.2, 2.0)},
    ("lstm", "inference", 100, 64, 256, 256, 1, False): {"onnxruntime": (1.0, 1.0), "torch": (1.1, 1.1)},
    ("gru", "inference", 100, 1, 128, 256, 1, False): {"onnxruntime": (1.25, 1.5)},
    ("gru", "inference", 100, 64, 256, 256, 1, False): {"onnxruntime": (1.05, 1.05)},
    ("lstm", "inference", 100, 1, 128, 256, 2, True): {"onnxruntime": (1.0, 1.5)},
    ("lstm", "inference", 100, 8, 128, 256, 2, True): {"onnxruntime": (1.0, 1.1)},
    ("lstm", "training", 50, 32, 128, 256, 1, False): {"torch": (1.3, 1.3)},
    ("gru", "training", 100, 1, 128, 256, 1, False): {"torch": (3.0, 3.0)},
}


def test_default_workloads_carry_the_target_table():
    got = {}
    gated = [w for w in bench.DEFAULT_WORKLOADS if w.kind.family != "rnn"]
    vanilla = [w for w in bench.DEFAULT_WORKLOADS if w.kind.family == "rnn"]
    # The vanilla RNN rows are for information: tanh and relu, no targets.
    assert sorted(w.cell for w in vanilla) == ["rnn_relu", "rnn_tanh"]
    assert all(
        not w.targets and w.matmul_fraction_target is None and w.scaling_target is None for w in vanilla
    )
    for w in gated:
        key = (w.cell, w.mode, w.T, w.N, w.I, w.H, w.layers, w.bidirectional)
        got[key] = {anchor: (at1, at2) for anchor, at1, at2 in w.targets}
        for anchor, (at1, at2) in got[key].items():
            assert w.target(anchor, 1) == at1 and w.target(anchor, 2) == at2
            assert w.target(anchor, 3) is None
        assert w.target("numpy", 1) is None
        # GFLOP/s against the matmul rate at N=64; 2-thread scaling at N=1, H=256.
        assert (w.matmul_fraction_target == 0.85) == (w.N == 64)
        assert (w.scaling_target == 1.6) == (w.N == 1 and w.H == 256)
    assert got == ISSUE_TARGETS
    assert len({w.name for w in bench.DEFAULT_WORKLOADS}) == len(bench.DEFAULT_WORKLOADS)


def test_workload_flops_and_weight_bytes():
    w = bench.Workload("lstm", "inference", 100, 64, 256, 256)
    assert w.flops == 2 * 100 * 64 * 4 * 256 * (256 + 256)
    assert bench.Workload("lstm", "training", 100, 64, 256, 256).flops == 3 * w.flops
    bi = bench.Workload("gru", "inference", 10, 2, 8, 16, layers=2, bidirectional=True)
    assert bi.flops == 2 * (2 * 10 * 2 * 3 * 16 * (8 + 16)) + 2 * (2 * 10 * 2 * 3 * 16 * (32 + 16))
    assert bench.Workload("lstm", "inference", 100, 1, 128, 256).recurrent_weight_bytes == 2**20
    assert bi.recurrent_weight_bytes == 4 * 3 * 16 * 16 * 4
    assert "bidirectional 2-layer" in bi.name
    # Targets are not part of a workload's identity.
    assert bench.Workload("gru", "inference", 1, 1, 1, 1, targets=(("torch", 1.0, 1.0),)) == bench.Workload(
        "gru", "inference", 1, 1, 1, 1
    )


def _row(result, workload, impl, threads=1):
    (row,) = [
        r
        for r in result["rows"]
        if r["workload"] == workload.name and r["impl"] == impl and r["threads"] == threads
    ]
    return row


def test_targets_met_and_missed_are_reported():
    """A target no run can miss and one no run can meet, against the NumPy reference (which is always
    there): the row says met / MISSED, and the summary lists exactly the missed one."""
    easy = bench.Workload("lstm", "inference", 4, 1, 3, 5, targets=(("numpy", 1e-9, 1e-9),))
    hard = bench.Workload("gru", "inference", 4, 2, 3, 5, targets=(("numpy", 1e9, 1e9),))
    out = io.StringIO()
    result = bench.run(threads=[1], repeat=2, warmup=1, workloads=(easy, hard), anchors=["numpy"], out=out)
    text = out.getvalue()
    assert _row(result, easy, "numpy")["target"] == 1e-9 and _row(result, easy, "numpy")["target_met"] is True
    assert _row(result, hard, "numpy")["target_met"] is False
    ratio_checks = [t for t in result["targets"] if t["kind"] == "ratio"]
    assert [(t["workload"], t["met"]) for t in ratio_checks] == [(easy.name, True), (hard.name, False)]
    assert result["meta"]["targets_total"] == len(result["targets"])
    assert result["meta"]["targets_met"] == sum(t["met"] for t in result["targets"])
    lines = text.splitlines()
    assert any(line.lstrip().startswith("numpy") and line.endswith(">=0.00 met") for line in lines)
    assert any(line.lstrip().startswith("numpy") and line.endswith(" MISSED") for line in lines)
    missed = text[text.index("performance targets:") :]
    assert "missed:" in missed
    assert f"{hard.short_name}, threads=1: numpy/fusedrnn = " in missed
    assert f"{easy.short_name}, threads=1: numpy" not in missed


def test_large_batch_gflops_against_the_matmul_rate():
    w = bench.Workload("gru", "inference", 3, workloads.LARGE_BATCH, 4, 8, matmul_fraction_target=0.85)
    out = io.StringIO()
    result = bench.run(
        threads=[1], repeat=2, warmup=1, workloads=(w,), anchors=["numpy"], quick=True, out=out, verbose=True
    )
    (matmul,) = result["matmul"]["by_threads"]
    assert matmul["threads"] == 1 and matmul["gflops"] > 0 and len(matmul["samples"]) >= 2
    assert "numpy.matmul" in result["matmul"]["method"]
    entries = {e["impl"]: e for e in result["compute"]}
    assert set(entries) == {"fusedrnn", "numpy"}
    for impl, e in entries.items():
        row = _row(result, w, impl)
        assert e["gflops"] == pytest.approx(w.flops / (row["median_ms"] / 1e3) / 1e9)
        assert e["fraction"] == pytest.approx(e["gflops"] / matmul["gflops"])
    assert entries["fusedrnn"]["target"] == 0.85 and entries["numpy"]["target"] is None
    (check,) = [t for t in result["targets"] if t["kind"] == "matmul_fraction"]
    assert check["met"] == (entries["fusedrnn"]["fraction"] >= 0.85)
    text = out.getvalue()
    assert "large batch" in text and "of matmul" in text and ">=85%" in text


def test_float64_large_batch_is_not_measured_against_the_float32_roof():
    w = bench.Workload("rnn_tanh", "inference", 3, workloads.LARGE_BATCH, 4, 8, dtype="float64")
    result = bench.run(
        threads=[1], repeat=1, warmup=0, workloads=(w,), anchors=[], quick=True, out=io.StringIO()
    )
    (entry,) = result["compute"]
    assert entry["gflops"] > 0 and entry["fraction"] is None and entry["matmul_gflops"] is None


def test_batch1_step_time_against_the_weight_read():
    w = bench.Workload("lstm", "inference", 5, 1, 4, 32)
    t = bench.Workload("gru", "training", 5, 1, 4, 32, layers=2, bidirectional=True)
    out = io.StringIO()
    result = bench.run(
        threads=[1], repeat=2, warmup=1, workloads=(w, t), anchors=[], quick=True, out=out, verbose=True
    )
    entries = {e["workload"]: e for e in result["batch1"]["rows"]}
    assert set(entries) == {w.name, t.name}
    for wl, passes in ((w, 1), (t, 2)):
        e = entries[wl.name]
        assert e["step_us"] == pytest.approx(_row(result, wl, "fusedrnn")["median_ms"] * 1e3 / wl.T)
        assert e["w_hh_bytes_per_thread"] == wl.recurrent_weight_bytes and e["passes"] == passes
        assert e["read_gb_per_s"] > 0
        assert e["limit_us"] == pytest.approx(passes * wl.recurrent_weight_bytes / (e["read_gb_per_s"] * 1e3))
    assert "NumPy reading a float32 array" in result["batch1"]["method"]
    assert "batch 1:" in out.getvalue() and "limit us" in out.getvalue()


def test_scaling_and_first_call_at_one_and_two_threads():
    w = bench.Workload("gru", "inference", 4, 1, 3, 16, scaling_target=1e-9)
    out = io.StringIO()
    result = bench.run(
        threads=[1, 2], repeat=2, warmup=1, workloads=(w,), anchors=[], quick=True, out=out, verbose=True
    )
    (scaling,) = result["scaling"]
    one, two = _row(result, w, "fusedrnn", 1), _row(result, w, "fusedrnn", 2)
    assert scaling["speedup"] == pytest.approx(one["median_ms"] / two["median_ms"])
    assert scaling["target"] == 1e-9 and scaling["met"] is True
    # At 2 threads each thread reads its half of W_hh.
    halves = {e["threads"]: e["w_hh_bytes_per_thread"] for e in result["batch1"]["rows"]}
    assert halves == {1: w.recurrent_weight_bytes, 2: w.recurrent_weight_bytes // 2}
    first = [t for t in result["targets"] if t["kind"] == "first_call"]
    assert [t["threads"] for t in first] == [1, 2]
    for t, row in zip(first, (one, two)):
        assert t["value"] == pytest.approx(row["first_call_ms"] / row["median_ms"])
        assert t["target"] == workloads.FIRST_CALL_TARGET and t["met"] == (t["value"] <= 2.0)
    text = out.getvalue()
    assert "scaling:" in text and "first call:" in text


def test_no_scaling_section_with_one_thread_count():
    result = bench.run(threads=[1], repeat=1, warmup=0, workloads=TINY[:1], anchors=[], out=io.StringIO())
    assert result["scaling"] == []


def test_targets_summary_lists_every_missed_target():
    checks = [
        report.TargetCheck("ratio", "A", 1, "torch time / fusedrnn time", 0.9, 1.2),
        report.TargetCheck("scaling", "B", None, "speedup", 1.7, 1.6),
        report.TargetCheck("first_call", "C", 2, "first / median", 2.5, 2.0, at_most=True),
    ]
    lines = report.targets_summary(checks)
    assert lines[0] == "performance targets: 1 of 3 met"
    assert lines[1:] == [
        "missed:",
        "  A, threads=1: torch time / fusedrnn time = 0.9, target >= 1.2",
        "  C, threads=2: first / median = 2.5, target <= 2",
    ]


# ---- plot and memory ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not has("matplotlib"), reason="matplotlib not installed")
def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "ratios.png"
    w = bench.Workload("lstm", "inference", 4, 1, 3, 5, targets=(("numpy", 1.0, 1.0),))
    out = io.StringIO()
    bench.run(
        threads=[1, 2], repeat=1, warmup=0, workloads=(w,), anchors=["numpy"], plot_path=str(path), out=out
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {path}" in out.getvalue()


def test_plot_without_matplotlib_fails_before_timing(monkeypatch, tmp_path, capsys):
    real = optional.try_import
    monkeypatch.setattr(optional, "try_import", lambda name: None if name == "matplotlib" else real(name))
    path = tmp_path / "ratios.png"
    assert main(["bench", "--quick", "--threads", "1", "--plot", str(path)]) == 1
    captured = capsys.readouterr()
    assert "needs matplotlib" in captured.err and "pip install matplotlib" in captured.err
    assert "threads = 1" not in captured.out  # nothing was timed
    assert not path.exists()


def test_peak_memory_method_sees_an_allocation():
    """The measurement the memory report rests on: the peak RSS, reset just before, grows by what is
    allocated and touched."""
    if not memory.reset_peak():
        pytest.skip("this kernel does not allow resetting the peak RSS")
    import mmap

    # Fresh anonymous pages (malloc might hand back memory an earlier test left resident).
    block = mmap.mmap(-1, 8 * 2**20)
    before = memory.proc_status_bytes("VmRSS")
    pages = np.frombuffer(block, dtype=np.uint8)
    pages[::4096] = 1  # touch every page: 8 MiB become resident
    grown = memory.proc_status_bytes("VmHWM") - before
    del pages
    block.close()
    assert 7 * 2**20 < grown < 10 * 2**20


def test_memory_report_in_fresh_processes():
    """fusedrnn only (PyTorch's import is slow; test_cli_memory_and_plot runs it)."""
    infer = bench.Workload("lstm", "inference", 20, 16, 8, 64)
    train = bench.Workload("gru", "training", 20, 8, 8, 64)
    impls = ["fusedrnn"]
    entries, notes = bench.measure_memory((infer, train), 1, impls)
    assert notes == []
    expected = [(w.name, i) for w in (infer, train) for i in impls]
    assert [(e["workload"], e["impl"]) for e in entries] == expected
    for e in entries:
        for key in ("model_bytes", "first_call_bytes", "second_call_bytes"):
            assert e[key] is None or e[key] >= 0
        assert e["allowance_bytes"] is not None
    by = {(e["workload"], e["impl"]): e for e in entries}
    # Outputs: y, h_n, c_n for inference; y, h_n, grad x, grad h0 and every weight's gradient for training.
    assert by[(infer.name, "fusedrnn")]["outputs_bytes"] == 4 * (20 * 16 * 64 + 2 * 16 * 64)
    n_params = 3 * 64 * (8 + 64) + 2 * 3 * 64
    train_outputs = 20 * 8 * 64 + 2 * 8 * 64 + 20 * 8 * 8 + n_params
    assert by[(train.name, "fusedrnn")]["outputs_bytes"] == 4 * train_outputs
    assert by[(infer.name, "fusedrnn")]["allowance_bytes"] == 20 * 16 * 4 * 64 * 4
    assert by[(train.name, "fusedrnn")]["allowance_bytes"] == (3 + 2) * 64 * 20 * 8 * 4


def test_cli_memory_and_plot(tmp_path, capsys, monkeypatch):
    """--memory and --plot from the command line, on one tiny workload."""
    monkeypatch.setattr(workloads, "QUICK_WORKLOADS", (bench.Workload("gru", "training", 3, 1, 3, 5),))
    path = tmp_path / "quick.json"
    argv = ["bench", "--quick", "--threads", "1", "--repeat", "1", "--memory", "--json", str(path)]
    if has("matplotlib"):
        argv += ["--plot", str(tmp_path / "quick.png")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    data = json.loads(path.read_text())
    impls = {"fusedrnn"} | ({"torch"} if has("torch") else set())
    assert {e["impl"] for e in data["memory"]["rows"]} == impls
    assert "memory, threads=1: peak resident memory" in text and "clear_refs" in data["memory"]["method"]
    memory_header = next(
        line for line in text.splitlines() if line.startswith("workload") and "model" in line
    )
    assert memory_header.split() == [
        "workload",
        "impl",
        "model",
        "1st",
        "call",
        "2nd",
        "call",
        "outputs",
        "allowance",
    ]
    assert "performance targets:" in text and "these verdicts mean nothing" in text
    assert_fits(text)
    if has("matplotlib"):
        assert (tmp_path / "quick.png").exists()


def test_cpu_meter_and_the_busy_machine_note():
    meter = machine.CpuMeter()
    x = 0
    for i in range(200_000):  # this process's own work is not counted as others'
        x += i
    others = meter.others()
    if others is None:
        pytest.skip("no /proc/stat here")
    assert set(others) == {"wall_s", "other_cpu_s", "other_cores", "steal_cores"}
    assert others["wall_s"] > 0 and others["other_cpu_s"] >= 0 and others["steal_cores"] >= 0
    quiet = {"wall_s": 10.0, "other_cpu_s": 0.1, "other_cores": 0.01, "steal_cores": 0.0}
    line, note = machine.others_report(2, quiet, 2)
    assert "0.01 cores busy" in line and note == ""
    line, note = machine.others_report(2, dict(quiet, other_cores=0.8), 2)
    assert "threads=2: other processes kept 0.80 cores busy" in note and "disturbed" in note


# ---- the user's own workload ---------------------------------------------------------------------------

BAD_WORKLOADS = {
    "cell": (dict(cell="lstmx"), "cell: expected one of lstm, gru, rnn_tanh, rnn_relu, got 'lstmx'"),
    "mode": (dict(mode="train"), "mode: expected one of inference, training, got 'train'"),
    "T": (dict(T=0), "T: expected a positive integer, got 0"),
    "H": (dict(H=2.5), "H: expected a positive integer, got 2.5"),
    "layers": (dict(layers=True), "layers: expected a positive integer, got True"),
    "dtype": (dict(dtype="float16"), "dtype: expected one of float32, float64, got 'float16'"),
    "proj-gru": (dict(cell="gru", proj_size=2), "proj_size: only an LSTM has a projection, got cell 'gru'"),
    "proj-H": (dict(proj_size=5), "proj_size: expected a size below the hidden size 5, got 5"),
    "lengths-count": (
        dict(lengths=(4, 4)),
        "lengths: expected 3 values, one per sequence of the batch, got 2",
    ),
    "lengths-float": (
        dict(lengths=(4, 2.0, 1)),
        "lengths: expected lengths from 1 to the sequence length 4, got (4, 2.0, 1)",
    ),
    "lengths-range": (
        dict(lengths=(4, 5, 1)),
        "lengths: expected lengths from 1 to the sequence length 4, got (4, 5, 1)",
    ),
}


@pytest.mark.parametrize("change, message", BAD_WORKLOADS.values(), ids=BAD_WORKLOADS.keys())
def test_workload_rejects_bad_fields(change, message):
    fields = dict(cell="lstm", mode="inference", T=4, N=3, I=2, H=5) | change
    with pytest.raises(ValueError) as info:
        bench.Workload(**fields)
    assert str(info.value) == message
    assert info.value.field == message.split(":")[0]


def test_workload_names_sizes_and_targets():
    w = bench.Workload(
        "lstm",
        "training",
        10,
        3,
        8,
        16,
        layers=2,
        bidirectional=True,
        dtype="float64",
        proj_size=4,
        lengths=[9, 10, 1],
    )
    assert w.lengths == (9, 10, 1)  # JSON's list becomes a tuple: the workload stays hashable
    from_numpy = bench.Workload("lstm", "inference", np.int64(10), 3, 8, 16, lengths=np.array([9, 10, 1]))
    assert from_numpy == bench.Workload("lstm", "inference", 10, 3, 8, 16, lengths=(9, 10, 1))
    assert type(from_numpy.T) is int and json.dumps(from_numpy.shape_dict())
    assert w.name == "LSTM bidirectional 2-layer training T=10 N=3 I=8 H=16 P=4 float64 ragged"
    assert w.short_name == "biLSTM x2 train T=10 N=3 I=8 H=16 P=4 float64 ragged"
    assert bench.Workload("rnn_relu", "inference", 1, 1, 1, 1).short_name == "RNN-relu inf T=1 N=1 I=1 H=1"
    assert bench.Workload("rnn_tanh", "inference", 1, 1, 1, 1).name == "RNN tanh inference T=1 N=1 I=1 H=1"
    # Per layer and direction: the gates' products over the layer input and h (P wide), and the projection.
    layer0 = 4 * 16 * (8 + 4) + 4 * 16
    layer1 = 4 * 16 * (2 * 4 + 4) + 4 * 16
    assert w.flops == 3 * 2 * (2 * 10 * 3 * layer0 + 2 * 10 * 3 * layer1)
    # W_hh (4H x P) and W_hr (P x H) of 2 layers x 2 directions, 8 bytes each.
    assert w.recurrent_weight_bytes == 2 * 2 * (4 * 16 * 4 + 4 * 16) * 8
    assert workloads.Workload(**w.shape_dict()) == w
    # A workload equal to a default one carries its targets; another carries none.
    standard = workloads.with_targets(bench.Workload("lstm", "inference", 100, 1, 128, 256))
    assert standard.target("torch", 1) == 1.2 and standard.scaling_target == 1.6
    assert workloads.with_targets(bench.Workload("lstm", "inference", 100, 2, 128, 256)).targets == ()


def _impls(result):
    return {r["impl"] for r in result["rows"]}


def _skipped(result, anchor):
    return [n for n in result["notes"] if n.startswith(f"{anchor}: skipped")]


def test_vanilla_rnn_ragged_batch_against_every_anchor():
    """A ragged relu RNN: every installed anchor runs it (ONNX Runtime with sequence_lens) and agrees."""
    w = bench.Workload("rnn_relu", "inference", 5, 3, 4, 6, layers=2, bidirectional=True, lengths=(5, 2, 4))
    out = io.StringIO()
    result = bench.run(threads=[1], repeat=1, warmup=0, workloads=(w,), out=out)
    expected = {"fusedrnn", "numpy"} | ({"torch"} if has("torch") else set())
    if has("onnxruntime") and has("onnx"):
        expected.add("onnxruntime")
    assert _impls(result) == expected
    for r in result["rows"]:
        assert r["cell"] == "rnn_relu" and r["nonlinearity"] == "relu" and r["lengths"] == [5, 2, 4]
        assert r["impl"] == "fusedrnn" or r["max_abs_diff"] < 1e-5
    assert result["stream"] == []  # one step at a time belongs to the default run only
    assert_fits(out.getvalue())


@pytest.mark.skipif(not has("torch"), reason="torch not installed")
def test_projection_and_float64_skip_onnxruntime_with_a_note():
    proj = bench.Workload("lstm", "training", 4, 2, 3, 6, proj_size=2, lengths=(4, 3))
    double = bench.Workload("gru", "inference", 4, 2, 3, 6, dtype="float64")
    out = io.StringIO()
    result = bench.run(threads=[1], repeat=1, warmup=0, workloads=(proj, double), out=out)
    rows = {(r["workload"], r["impl"]): r for r in result["rows"]}
    assert set(rows) == {(w.name, impl) for w in (proj, double) for impl in ("fusedrnn", "numpy", "torch")}
    assert rows[(double.name, "torch")]["dtype"] == "float64"
    assert rows[(double.name, "torch")]["max_abs_diff"] < 1e-12  # float64 answers, checked to float64
    assert rows[(proj.name, "torch")]["proj_size"] == 2
    if has("onnxruntime"):
        assert _skipped(result, "onnxruntime") == [
            "onnxruntime: skipped (ONNX Runtime runs inference only)",
            "onnxruntime: skipped (ONNX Runtime's GRU operator runs float32 only, not float64)",
        ]
        assert "note: onnxruntime: skipped (ONNX Runtime's GRU operator runs float32 only" in out.getvalue()
    inference_proj = bench.Workload("lstm", "inference", 4, 2, 3, 6, proj_size=2)
    result = bench.run(threads=[1], repeat=1, warmup=0, workloads=(inference_proj,), out=io.StringIO())
    if has("onnxruntime"):
        assert _skipped(result, "onnxruntime") == [
            "onnxruntime: skipped (ONNX's LSTM operator has no projection (proj_size))"
        ]


def test_float64_answers_are_checked_to_float64():
    """A float64 anchor off by 1e-7, which float32's tolerance would let pass, stops the run."""
    w = bench.Workload("lstm", "inference", 3, 2, 3, 4, dtype="float64")
    assert answers.tolerance(w) < 1e-7 < answers.tolerance(dataclasses.replace(w, dtype="float32"))
    want = {"output": np.ones((3, 2, 4))}
    with pytest.raises(bench.AnswerMismatch, match="differs from fusedrnn in output"):
        answers.check_answer(w, "x", {"output": want["output"] + 1e-7}, want)


# ---- the default report ----------------------------------------------------------------------------------


def _fake_row(w, impl, threads, median_s, ratio=None, target=None):
    return timing.Row(w, threads, impl, median_s, median_s, 3, ratio, None, target=target, p90_s=median_s * 2)


def test_brief_table_fits_in_100_columns_with_long_names_and_large_values():
    long = bench.Workload(
        "lstm", "training", 1000, 512, 1024, 4096, 3, True, "float64", 2048, tuple(range(1, 513))
    )
    short = bench.Workload("gru", "inference", 100, 64, 256, 256)
    rows = [
        _fake_row(long, "fusedrnn", 1, 98765.4321),
        _fake_row(long, "numpy", 1, 9876543.21, ratio=100.0),
        _fake_row(long, "onnxruntime", 16, 0.000012, ratio=0.0001, target=1.25),
        _fake_row(short, "fusedrnn", 1, 0.5),
        _fake_row(short, "torch", 1, 1.0, ratio=2.0, target=1.05),
    ]
    lines = report.brief_table(rows)
    assert_fits("\n".join(lines))
    # The long name has a line of its own; the short one leads its first row.
    assert lines[1] == long.short_name
    assert lines[2].split()[:2] == ["1", "fusedrnn"]
    assert lines[-2].split()[:3] == [short.short_name.split()[0], "inf", "T=100"]
    assert lines[-1].split() == ["torch", "1000.000", "2000.000", "2.00x", ">=1.05", "met"]
    assert lines[4].split()[-3:] == ["0.00x", ">=1.25", "MISSED"]


def test_default_report_shows_brief_notes_and_the_busy_machine(monkeypatch):
    monkeypatch.setattr("fusedrnn.bench.cli.load_average", lambda: 3.5)
    train = bench.Workload("gru", "training", 3, 1, 3, 5)
    out = io.StringIO()
    result = bench.run(threads=[1], repeat=1, workloads=(train,), anchors=["numpy", "onnxruntime"], out=out)
    text = out.getvalue()
    assert "load average 3.50 at the start" in result["meta"]["busy"] and result["meta"]["judged_busy"]
    assert "busy machine (load average 3.50 at the start" in text and "the ratios are unreliable" in text
    # An anchor that could not run is said; the round counts and the like are left to --verbose.
    skipped = _skipped(result, "onnxruntime")
    assert len(skipped) == 1 and f"note: {skipped[0]}" in text
    hidden = len(result["notes"]) - 1
    assert hidden >= 1 and f"{hidden} more note" in text
    assert any(n.startswith("the machine was busy") for n in result["notes"])
    assert "note: the machine was busy" not in text
    assert_fits(text)


def test_busy_reasons():
    quiet = {"wall_s": 10.0, "other_cpu_s": 0.1, "other_cores": 0.01, "steal_cores": 0.0}
    assert machine.busy_reasons(0.2, {1: quiet, 2: quiet}) == []
    assert machine.busy_reasons(None, {}) == []
    busy = dict(quiet, other_cores=0.9, steal_cores=0.3)
    assert machine.busy_reasons(0.7, {1: quiet, 2: busy}) == [
        "load average 0.70 at the start",
        "other processes kept cores busy while timing: 0.90 (steal 0.30) at threads=2",
    ]


# ---- --json - and the progress line ------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_on_a_terminal_redraws_one_line_and_erases_it():
    stream, clock = FakeTerminal(), FakeClock()
    bar = progress.Progress(stream, 4, clock=clock)
    bar.update(0, "threads=1: LSTM")
    assert stream.getvalue() == "\rbench   0%  estimating time left  threads=1: LSTM"
    clock.now += 0.05
    bar.update(0.5, "threads=1: LSTM")  # within REDRAW_S of the last: not drawn
    assert stream.getvalue().count("\r") == 1
    clock.now += 9.95  # 10 s in, 1 of 4 units done: 30 s left
    bar.update(1, "threads=1: GRU")
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("bench  25%  about 30s left  threads=1: GRU")
    clock.now += 10  # 20 s in, 3 of 4 done
    bar.update(3, "x")
    last = stream.getvalue().split("\r")[-1]
    assert last.rstrip() == "bench  75%  about 10s left  x"
    assert len(last) == len("bench  25%  about 30s left  threads=1: GRU")  # the longer line is blanked
    assert "\n" not in stream.getvalue()
    bar.close()  # blanks the text drawn last (what follows it is blank already)
    assert stream.getvalue().endswith("\r" + " " * len(last.rstrip()) + "\r")


def test_progress_elsewhere_writes_a_plain_line_now_and_then():
    stream, clock = io.StringIO(), FakeClock()
    bar = progress.Progress(stream, 10, clock=clock)
    for _ in range(5):
        clock.now += progress.PLAIN_EVERY_S / 6
        bar.update(1, "a")
    assert stream.getvalue() == ""  # a run shorter than PLAIN_EVERY_S prints nothing
    clock.now += progress.PLAIN_EVERY_S / 6
    bar.update(2, "b")
    assert stream.getvalue() == "bench  20%  about 2m00s left  b\n"
    clock.now += 1
    bar.update(3, "c")
    assert stream.getvalue().count("\n") == 1
    bar.close()
    assert "\r" not in stream.getvalue()
    progress.Progress(None, 3, clock=clock).update(1, "nowhere")  # no stream: nothing to do


def test_format_duration():
    assert [progress.format_duration(s) for s in (0, 1, 44, 61, 599, 601, 3600, 7322)] == [
        "0s",
        "5s",
        "45s",
        "1m05s",
        "10m00s",
        "11m",
        "1h00m",
        "2h03m",
    ]


def test_cli_json_to_stdout_is_quiet_and_a_terminal_gets_progress(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(workloads, "QUICK_WORKLOADS", (bench.Workload("gru", "inference", 3, 1, 3, 5),))
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    argv = ["bench", "--quick", "--threads", "1", "--repeat", "1"]
    assert main(argv + ["--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)  # the JSON alone on stdout
    assert result["rows"] and terminal.getvalue() == ""
    assert main(argv + ["--json", str(tmp_path / "r.json")]) == 0
    assert terminal.getvalue().startswith("\rbench ") and terminal.getvalue().endswith("\r")
    assert "wrote" in capsys.readouterr().out
    terminal.truncate(0)
    assert main(argv + ["--no-progress"]) == 0
    assert terminal.getvalue() == ""


def test_cli_times_the_users_workload(tmp_path, capsys):
    path = tmp_path / "own.json"
    argv = ["bench", "--threads", "1", "--repeat", "1", "--json", str(path), "--cell", "rnn"]
    argv += ["--nonlinearity", "relu", "--hidden-size", "8", "--input-size", "4", "--batch", "3"]
    argv += [
        "--seq-len",
        "5",
        "--lengths",
        "5,2,4",
        "--num-layers",
        "2",
        "--bidirectional",
        "--dtype",
        "float32",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    result = json.loads(path.read_text())
    (w,) = {r["workload"] for r in result["rows"]}
    assert w == "RNN relu bidirectional 2-layer inference T=5 N=3 I=4 H=8 ragged"
    assert {r["lengths"] == [5, 2, 4] and r["layers"] == 2 for r in result["rows"]} == {True}
    assert {"fusedrnn", "numpy"} <= _impls(result)
    assert result["stream"] == [] and "RNN-relu" in text
    assert_fits(text)


def test_cli_training_and_random_lengths(tmp_path, capsys):
    path = tmp_path / "train.json"
    argv = ["bench", "--threads", "1", "--repeat", "1", "--json", str(path), "--training", "--cell", "gru"]
    argv += [
        "--hidden-size",
        "6",
        "--input-size",
        "3",
        "--batch",
        "4",
        "--seq-len",
        "7",
        "--lengths",
        "random",
    ]
    assert main(argv) == 0
    rows = json.loads(path.read_text())["rows"]
    lengths = {tuple(r["lengths"]) for r in rows}
    assert len(lengths) == 1
    (drawn,) = lengths
    assert len(drawn) == 4 and all(1 <= n <= 7 for n in drawn)
    assert {r["mode"] for r in rows} == {"training"} and "onnxruntime" not in {r["impl"] for r in rows}


# ---- the plot of a busy run ------------------------------------------------------------------------------


def _plot_result(busy):
    def row(cell, nonlinearity, threads):
        return {
            "workload": f"{cell} inference T=4 N=1 I=3 H=5",
            "cell": cell,
            "nonlinearity": nonlinearity,
            "mode": "inference",
            "N": 1,
            "layers": 1,
            "bidirectional": False,
            "dtype": "float64",
            "impl": "torch",
            "threads": threads,
            "ratio": 1.5,
            "target": 1.2,
            "target_met": True,
        }

    rows = [row(cell, nl, n) for cell, nl in (("lstm", None), ("rnn_relu", "relu")) for n in (1, 2)]
    meta = {"versions": {"fusedrnn": "0"}, "cpu": "cpu", "busy": busy, "dtypes": ["float64"]}
    return {"meta": meta, "rows": rows}


def _texts(fig):
    return [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.skipif(not has("matplotlib"), reason="matplotlib not installed")
def test_plot_of_a_busy_run_says_so():
    import matplotlib.pyplot as plt

    reasons = [
        "load average 1.20 at the start",
        "other processes kept cores busy while timing: 0.80 at threads=2",
    ]
    fig = plotting.figure(_plot_result(reasons))
    texts = _texts(fig)
    plt.close(fig)
    assert plotting.BUSY_MARK in texts  # the watermark across the axes
    (caption,) = [t for t in texts if t.startswith(plotting.BUSY_MARK + ":")]
    assert all(reason in caption for reason in reasons) and "unreliable" in caption
    quiet = plotting.figure(_plot_result([]))
    assert not any(plotting.BUSY_MARK in t for t in _texts(quiet))
    (ax,) = quiet.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["LSTM inf\nN=1 vs torch\nfloat64", "RNN-relu inf\nN=1 vs torch\nfloat64"]
    assert ax.get_title().endswith("(float64)")
    plt.close(quiet)
