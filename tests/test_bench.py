"""The benchmark (``python -m fusedrnn bench``) on tiny shapes: table and JSON structure, answer checks."""

from __future__ import annotations

import importlib.util
import io
import json

import numpy as np
import pytest

from fusedrnn import bench
from fusedrnn.__main__ import main

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
        if r["impl"] == "fusedrnn":
            assert r["ratio"] is None and r["max_abs_diff"] is None and r["verdict"] is None
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
    monkeypatch.setattr(bench, "ROUND_BUDGET_S", 0.0)
    result = bench.run(threads=[1], workloads=TINY[:1], anchors=["numpy"], out=io.StringIO())
    assert [r["runs"] for r in result["rows"] if r["impl"] == "fusedrnn"] == [bench.MIN_ROUNDS]
    assert any(f"{bench.MIN_ROUNDS} rounds after 1 warm-up" in n for n in result["notes"])


def test_wrong_answer_is_an_error(monkeypatch):
    """An anchor whose answer is off (here by 0.01 in one output entry) stops the benchmark."""

    def broken(problem, threads):
        runner = bench.ANCHOR_FACTORIES["numpy"](problem, threads)
        answer = runner.answer

        def bad_answer(res):
            out = {k: np.array(v, copy=True) for k, v in answer(res).items()}
            out["output"].flat[0] += 0.01
            return out

        return bench.Runner("broken", runner.call, bad_answer)

    monkeypatch.setitem(bench.ANCHOR_FACTORIES, "broken", broken)
    with pytest.raises(bench.AnswerMismatch, match="broken differs from fusedrnn in output"):
        run_tiny(anchors=["broken"])


def test_check_answer_rejects_missing_and_misshapen():
    w = TINY[0]
    want = {"output": np.zeros((4, 2, 5), np.float32)}
    with pytest.raises(bench.AnswerMismatch, match="no 'output'"):
        bench.check_answer(w, "x", {}, want)
    with pytest.raises(bench.AnswerMismatch, match="shape"):
        bench.check_answer(w, "x", {"output": np.zeros((4, 5), np.float32)}, want)
    with pytest.raises(bench.AnswerMismatch, match="not finite"):
        bench.check_answer(w, "x", {"output": np.full((4, 2, 5), np.nan, np.float32)}, want)
    assert bench.check_answer(w, "x", {"output": want["output"] + 1e-7}, want)[0] == pytest.approx(1e-7)


def test_unknown_anchor_and_bad_threads():
    with pytest.raises(ValueError, match="anchors"):
        run_tiny(anchors=["nonesuch"])
    with pytest.raises(ValueError, match="threads"):
        bench.run(threads=[0], workloads=TINY, anchors=["numpy"], out=io.StringIO())


@pytest.mark.skipif(not (has("onnx") and has("onnxruntime")), reason="onnx and onnxruntime not installed")
def test_onnx_graph_built_from_weights_without_torch(monkeypatch):
    """Without PyTorch: fusedrnn's own weights, and ONNX Runtime runs a graph built with onnx.helper."""
    real = bench._try_import
    monkeypatch.setattr(bench, "_try_import", lambda name: None if name == "torch" else real(name))
    workloads = (
        bench.Workload("lstm", "inference", 4, 2, 3, 5),
        bench.Workload("gru", "inference", 4, 3, 3, 5),
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
