"""The main job as the README gives it: `make demo`, from the repository root, with its default relative run
directory -- on the smoke preset (configs/smoke.yaml: every stage for real, a handful of examples). Then the
same command again, which must skip every stage, and the same run reached from another working directory
through a relative path. (`python -m pipelines.evaluate` runs for real in test_predict_integration.py,
`pipelines.train` and `pipelines.reasons` in the kill-and-rerun tests of test_train.py and
test_reasons_integration.py; test_stages.py checks that each module is its subcommand.)

This is the default test run's one end-to-end run of the real stack (Ray, vLLM's CPU build, the embedded
model, LoRA on Ray Train): a few minutes on 2 cores.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "runs" / "smoke"  # what `make demo CONFIG=configs/smoke.yaml` writes: runs/<config name>
STAGES = ("synth", "prepare", "reasons", "train", "evaluate", "report")
# a test must never join a Ray cluster that happens to run on the machine
ENV = {**os.environ, "RAY_ADDRESS": "local"}


def _make_demo() -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    out = subprocess.run(["make", "demo", "CONFIG=configs/smoke.yaml"], cwd=REPO, env=ENV, capture_output=True,
                         text=True, timeout=1500)
    return out, time.perf_counter() - started


@pytest.fixture(scope="module")
def demo():
    shutil.rmtree(RUN, ignore_errors=True)  # a fresh run: this preset's directory belongs to this test
    first, seconds = _make_demo()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    print(f"make demo CONFIG=configs/smoke.yaml: {seconds:.0f} s")
    return first, seconds


def test_make_demo_runs_every_stage_and_writes_a_report(demo):
    first, _ = demo
    for i, stage in enumerate(STAGES, 1):
        assert f"[{i}/6] {stage:<8} done in" in first.stdout, stage
    report = RUN / "report" / "report.md"
    assert f"report: {report}" in first.stdout and report.read_text().strip()
    # the workers wrote under the run directory, not under their own working directory
    assert [r["step"] for r in map(json.loads, (RUN / "train" / "joint" / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    assert (RUN / "train" / "joint" / "workers" / "rank-0.jsonl").exists()
    assert (RUN / "adapters" / "joint" / "adapter_model.safetensors").exists()
    metrics = json.loads((RUN / "report" / "metrics.json").read_text())["predictors"]
    assert {"popular", "stay", "markov", "gru", "zero-shot", "joint"} <= set(metrics)
    for path in (RUN / "predictions").glob("*.parquet"):
        assert pl.read_parquet(path)["predicted_code"].null_count() == 0, path


def test_make_demo_again_skips_every_stage_in_under_a_minute(demo):
    again, seconds = _make_demo()
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped: done") == 6, again.stdout
    assert seconds < 60, f"a run with nothing to do took {seconds:.0f} s"


def test_the_same_run_through_a_relative_path_from_another_directory(demo, tmp_path):
    relative = os.path.relpath(RUN, tmp_path)
    out = subprocess.run([str(REPO / ".venv" / "bin" / "jobpred"), "run", "--config",
                          str(REPO / "configs" / "smoke.yaml"), "--run", relative], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("skipped: done") == 6 and f"run directory {RUN}" in out.stdout
    assert not (tmp_path / "runs").exists()
