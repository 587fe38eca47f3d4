"""The report: every predictor in the predictions folder, with CIs, breakdowns and plots."""

import json
import re
import shutil
import subprocess
import sys

import polars as pl
import pytest
from evalkit import baseline_run

from jobpred.config import BASELINES
from jobpred.eval import run_report
from jobpred.taxonomy import Taxonomy

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """A copy of the shared baseline run, plus an LLM-like predictor written by hand, then reported."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(baseline_run(tmp_path_factory.getbasetemp()), run)
    # What a later predictor writes: titles, some invalid or missing, no history columns, no ranked list.
    test = pl.read_parquet(run / "examples" / "test.parquet")
    tax = Taxonomy.load()
    titles = [tax.title(c) if i % 3 == 0 else ("Wizard" if i % 3 == 1 else None)
              for i, c in enumerate(test["target_code"])]
    pl.DataFrame({"example_id": test["example_id"], "target_code": test["target_code"],
                  "predicted_title": titles}).write_parquet(run / "predictions" / "llm_zero_shot.parquet")
    summary = run_report(run, bootstrap=500, seed=1)
    return run, summary


def test_report_files_exist_and_list_every_predictor(report_run):
    run, summary = report_run
    out = run / "report"
    md = re.sub(" +", " ", (out / "report.md").read_text())  # table cells are padded
    metrics = json.loads((out / "metrics.json").read_text())
    names = [*BASELINES, "llm_zero_shot"]
    assert sorted(metrics["predictors"]) == sorted(names) == sorted(summary["predictors"])
    table = md.split("## Predictors")[1].split("\n\n")[1]
    for name in names:
        assert f"| {name} |" in table
    assert "## Accuracy by target Job Zone" in md and "## Accuracy by history length" in md
    assert "## Most frequent SOC major-group errors" in md
    for png in ("metrics.png", "by_job_zone.png", "by_history_length.png", "major_group_errors.png"):
        assert (out / png).read_bytes()[:8] == PNG and f"({png})" in md
    stage = json.loads((run / "manifest.json").read_text())["stages"]["report"]
    assert stage["outputs"]["report"] == "report/report.md"


def test_metrics_have_cis_and_breakdowns_that_add_up(report_run):
    run, _ = report_run
    metrics = json.loads((run / "report" / "metrics.json").read_text())["predictors"]
    for name, result in metrics.items():
        for metric, (lo, hi) in result["ci"].items():
            assert lo <= result[metric] <= hi, (name, metric)
        for key in ("job_zone", "history_length", "major_group_change"):
            assert sum(g["n"] for g in result["breakdowns"][key]) == result["total"], (name, key)
    assert metrics["markov"]["AccEM"] > metrics["popular"]["AccEM"]


def test_a_new_predictor_is_one_more_row(report_run):
    run, _ = report_run
    metrics = json.loads((run / "report" / "metrics.json").read_text())["predictors"]
    llm = metrics["llm_zero_shot"]
    n = llm["total"]
    assert llm["valid"] == (n + 2) // 3 and llm["invalid"] == (n + 1) // 3 and llm["missing"] == n // 3
    assert llm["AccEM"] == round(100 * ((n + 2) // 3) / n, 6)
    assert "MRR" not in llm  # it does not rank
    # History features came from the examples by example_id: the breakdowns are complete.
    assert all(g["group"] != "unknown" for g in llm["breakdowns"]["history_length"])
    md = re.sub(" +", " ", (run / "report" / "report.md").read_text())
    header = next(line for line in md.splitlines() if line.startswith("| predictor | n |")).split(" | ")
    row = dict(zip(header, next(line for line in md.splitlines() if line.startswith("| llm_zero_shot |")).split(" | ")))
    assert row["Acc@5"] == row["MRR"] == "-"  # it does not rank
    assert row["from the model"] == row["served AccEM"] == "-"  # no answer_method column: not an LLM table


def test_report_without_predictions_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="baselines-only"):
        run_report(tmp_path)


def test_evaluate_cli(tmp_path_factory, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(baseline_run(tmp_path_factory.getbasetemp()), run, ignore=shutil.ignore_patterns("predictions",
                                                                                                        "report"))
    cli = [sys.executable, "-m", "jobpred.cli", "evaluate", "--run", str(run)]
    out = subprocess.run([*cli, "--eval-run", str(tmp_path / "nowhere")], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 2 and "has no 'prepare' stage" in out.stderr
    out = subprocess.run([*cli, "--baselines-only", "baselines.predictors=[popular,markov]",
                          "baselines.bootstrap_samples=200"], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert set(summary["predictors"]) == {"popular", "markov"}
    assert summary["predictors"]["markov"]["AccEM"] > summary["predictors"]["popular"]["AccEM"]
    assert json.loads((run / "report" / "metrics.json").read_text())["bootstrap_samples"] == 200
