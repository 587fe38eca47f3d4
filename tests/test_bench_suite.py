"""The benchmark suite runner (`make bench`): each benchmark in a subprocess, one results file and table.

The real suite takes ~30+ minutes; here it runs one real, small benchmark (scoring) end to end into a
temporary results directory, and checks how it finds each benchmark's own results file.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

import benchmarks.__main__ as suite
from benchmarks.common import machine


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("JOBPRED_BENCH_RESULTS", str(tmp_path))  # for the benchmark subprocesses
    monkeypatch.setattr(suite, "RESULTS", tmp_path)
    return tmp_path


def test_each_benchmark_reads_its_own_results_file(results):
    stamp, cores = dt.date.today().isoformat(), machine()["cores"]
    (results / f"{stamp}-reasons-{cores}cpu.json").write_text(json.dumps({"which": "reasons"}))
    (results / f"{stamp}-reasons-streaming-{cores}cpu.json").write_text(json.dumps({"which": "streaming"}))
    assert suite._load("reasons") == {"which": "reasons"}
    assert suite._load("train") is None


def test_suite_runs_a_benchmark_and_gathers_its_table(results, monkeypatch):
    monkeypatch.setattr(suite, "SUITE", {
        "score": ("benchmarks.bench_score", ["--predictions", "2000", "--persons", "500", "--bootstrap", "20"], ["score"]),
        "later": ("benchmarks.bench_not_built_yet", [], []),
    })
    monkeypatch.setattr("sys.argv", ["benchmarks"])
    suite.main()
    stamp = dt.date.today().isoformat()
    host_files = [p for p in results.glob(f"{stamp}-*.json") if not p.name.endswith("cpu.json")]
    assert len(host_files) == 1, host_files
    gathered = json.loads(host_files[0].read_text())
    assert gathered["status"]["later"] == "skipped: not built yet"
    assert gathered["status"]["score"].endswith("s") and "failed" not in gathered["status"]["score"]
    assert gathered["results"]["score"]["benchmark"] == "score"
    table = host_files[0].with_suffix(".md").read_text()
    assert "## score" in table and "| " in table and "- later: skipped" in table
    # --only reruns one benchmark and keeps the others' results in today's suite file
    monkeypatch.setattr("sys.argv", ["benchmarks", "--only", "later"])
    suite.main()
    again = json.loads(host_files[0].read_text())
    assert again["results"]["score"] == gathered["results"]["score"] and "later" in again["status"]
    assert "## score" in host_files[0].with_suffix(".md").read_text()


def test_peak_memory_sums_the_whole_process_tree(capsys):
    """`python -m benchmarks.peak_memory -- CMD` counts the memory of the processes CMD starts (a Ray driver's
    workers), not only CMD's own: here a grandchild holds ~300 MB while its parents hold little."""
    import sys

    from benchmarks import peak_memory

    hold = "import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(3)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {hold!r}])"
    assert peak_memory.main(["--interval", "0.3", "--", sys.executable, "-c", parent]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["returncode"] == 0 and out["peak_pss_gib"] >= 0.25
    assert len(out["largest_at_peak"]) >= 2 and out["largest_at_peak"][0][1] >= 0.25


def test_bench_train_before_runs_the_package_of_a_git_ref(tmp_path):
    """`bench_train --before REF` starts its child where `import jobpred` is REF's package, not the tree's."""
    import subprocess
    import sys

    from benchmarks.bench_train import _package_at
    from benchmarks.common import REPO

    shim = _package_at("HEAD", tmp_path)
    assert (shim / "benchmarks").resolve() == REPO / "benchmarks"
    code = "import jobpred, benchmarks.bench_train, pathlib; print(pathlib.Path(jobpred.__file__).resolve())"
    out = subprocess.run([sys.executable, "-c", code], cwd=shim, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shim)})
    assert out.stdout.strip() == str((tmp_path / "tree" / "jobpred" / "__init__.py").resolve())


def test_bench_cost_puts_runs_side_by_side_with_ratios_to_the_first():
    from benchmarks.bench_cost import compare

    def model(reasons_s, evaluate_s, rows, tokens_per_s, starts):
        return {"stage_seconds": {"reasons": reasons_s, "evaluate": evaluate_s}, "reasons_examples": 24,
                "llm_stages": [{"stage": "evaluate: LLM predictors", "rows": rows, "rows_per_s": rows / evaluate_s}],
                "training": [{"adapter": "joint", "tokens_per_s": tokens_per_s}], "engine_starts": starts}

    table = {r["figure"]: r for r in compare([model(240.0, 600.0, 72, 200.0, 8), model(24.0, 60.0, 720, 300.0, 4)])}
    assert table["reasons: examples/s end to end"]["run 2 / run 1"] == 10.0
    assert table["evaluate: LLM predictions/s end to end"]["run 2 / run 1"] == 100.0
    assert table["train: mean tokens/s per adapter"]["run 2 / run 1"] == 1.5
    assert table["engine starts per run"]["run 2 / run 1"] == 0.5
    one = compare([{**model(1.0, 1.0, 1, 1.0, 1), "training": []}, model(1.0, 1.0, 1, 1.0, 1)])
    assert {r["figure"]: r for r in one}["train: mean tokens/s per adapter"]["run 2 / run 1"] is None


def test_reason_signal_auc_counts_ties_half_and_resamples_examples():
    import numpy as np
    import polars as pl

    from benchmarks.bench_reason_signals import auc, auc_ci

    assert auc(np.array([2.0, 3.0]), np.array([1.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0, 2.0])) == 0.25 and auc(np.array([]), np.array([1.0])) is None
    frame = pl.DataFrame({"example_id": ["a", "a", "b", "b", "c", "c"], "gain": [2.0, -1.0, 1.0, 0.0, None, 5.0],
                          "hinted": [True, False, True, False, True, False]})
    r = auc_ci(frame, "gain", "hinted", samples=200, seed=0)
    assert r["n"] == 5 and r["auc"] == 0.667  # 4 of the 6 pairs: only c's 5.0 beats a positive and 0.0 <= r["lo"] <= r["auc"] <= r["hi"] <= 1.0
