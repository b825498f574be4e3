"""The benchmark (``python -m fusedrnn bench``) on tiny shapes: table and JSON structure, answer checks."""

from __future__ import annotations

import importlib.util
import io
import json

import numpy as np
import pytest

from fusedrnn import bench
from fusedrnn.__main__ import main
from fusedrnn.bench import anchors, answers, machine, memory, optional, report, timing, workloads

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
}


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_tiny(**kwargs):
    out = io.StringIO()
    kwargs.setdefault("anchors", ["numpy"])
    result = bench.run(threads=[1], repeat=2, warmup=1, workloads=TINY, out=out, **kwargs)
    return result, out.getvalue()


def test_rows_and_table_against_numpy(tmp_path):
    path = tmp_path / "bench.json"
    result, text = run_tiny(json_path=str(path))
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    rows = result["rows"]
    assert [(r["workload"], r["impl"]) for r in rows] == [
        (w.name, impl) for w in TINY for impl in ("fusedrnn", "numpy")
    ]
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["threads"] == 1 and r["dtype"] == "float32" and r["runs"] >= 1
        assert r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"]
        assert r["gflops"] > 0 and r["target"] is None and r["target_met"] is None
        if r["impl"] == "fusedrnn":
            assert r["ratio"] is None and r["max_abs_diff"] is None and r["verdict"] is None
            assert r["first_call_ms"] > 0
        else:
            assert r["ratio"] > 0
            assert r["verdict"] == ("fusedrnn faster" if r["ratio"] >= 1 else "fusedrnn slower")
            assert 0 <= r["max_abs_diff"] < 1e-4
    assert result["meta"]["threads"] == [1]
    assert "threads = 1" in text and "ratio = anchor time / fusedrnn time" in text
    for w in TINY:
        assert w.name in text
    assert ("fusedrnn is SLOWER" in text) or ("faster than every anchor" in text)
    assert bench.format_table([]) == ""


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
    assert f"wrote {path}" in text
    # One step at a time against torch's cells, with its two targets checked.
    result = json.loads(path.read_text())
    stream = {(r["kind"], r["impl"]) for r in result["stream"]}
    wanted = {("lstm", "stream.step"), ("lstm", "cell"), ("lstm", "arithmetic"), ("gru", "stream.step")}
    assert wanted <= stream
    assert (("lstm", "torch cell") in stream) == has("torch")
    kinds = {c["kind"] for c in result["targets"]}
    assert "stream_overhead" in kinds and ("stream_vs_torch" in kinds) == has("torch")
    assert "One step at N=1, H=128" in text


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
    for w in bench.DEFAULT_WORKLOADS:
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
    assert any(" met" in line and line.lstrip().startswith("numpy") and ">=0.00" in line for line in lines)
    assert any("MISSED" in line and line.lstrip().startswith("numpy") for line in lines)
    missed = text[text.index("performance targets:") :]
    assert "missed:" in missed
    assert f"{hard.name}, threads=1: numpy time / fusedrnn time" in missed
    assert f"{easy.name}, threads=1: numpy" not in missed


def test_large_batch_gflops_against_the_matmul_rate():
    w = bench.Workload("gru", "inference", 3, workloads.LARGE_BATCH, 4, 8, matmul_fraction_target=0.85)
    out = io.StringIO()
    result = bench.run(
        threads=[1], repeat=2, warmup=1, workloads=(w,), anchors=["numpy"], quick=True, out=out
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


def test_batch1_step_time_against_the_weight_read():
    w = bench.Workload("lstm", "inference", 5, 1, 4, 32)
    t = bench.Workload("gru", "training", 5, 1, 4, 32, layers=2, bidirectional=True)
    out = io.StringIO()
    result = bench.run(threads=[1], repeat=2, warmup=1, workloads=(w, t), anchors=[], quick=True, out=out)
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
    result = bench.run(threads=[1, 2], repeat=2, warmup=1, workloads=(w,), anchors=[], quick=True, out=out)
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
    assert "memory: peak resident memory" in text and "clear_refs" in data["memory"]["method"]
    assert "performance targets:" in text and "these verdicts mean nothing" in text
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
