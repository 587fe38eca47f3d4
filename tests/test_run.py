"""`jobpred run`: which stages run, skip, resume or are redone (unit tests, with recording fake stages),
and the whole job for real on a tiny config (slow: Ray, vLLM's CPU build, the default model, LoRA)."""

import json
import time
from pathlib import Path

import polars as pl
import pytest

from jobpred import cli, pipeline, stages
from jobpred.config import load_config
from jobpred.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
ALL = ["synth", "prepare", "reasons", "train", "evaluate", "report"]


def _touch(run_dir, rel: str, text: str = "x") -> None:
    path = Path(run_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class FakeStages:
    """Stand-ins for the library functions `jobpred.pipeline` calls: each writes an output under the real
    stage's directory, records the real stage's manifest entry, and appends its name to ``calls``."""

    def __init__(self):
        self.calls: list[str] = []
        self.seen: dict = {}
        self.fail_train_once = False

    def synth(self, cfg, out, progress=True):
        self.calls.append("synth")
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text('{"person_id": "p"}\n' * cfg.persons)
        return {"persons": cfg.persons}

    def prepare(self, input_path, run_dir, cfg, ray_cfg, input_format="jsonl"):
        self.calls.append("prepare")
        self.seen["prepare_input"] = (str(input_path), input_format)
        _touch(run_dir, "examples/train.parquet")
        RunDir(run_dir).record_stage("prepare", outputs={"examples": "examples"}, config=cfg)
        return {"accepted": 1}

    def reasons(self, cfg, run_dir):
        self.calls.append("reasons")
        self.seen["reasons_found_old_outputs"] = (Path(run_dir) / "reasons" / "oracle.parquet").exists()
        _touch(run_dir, "reasons/oracle.parquet")
        RunDir(run_dir).record_stage("reasons", outputs={"oracle": "reasons/oracle.parquet"}, config=cfg.reasons)
        return {"oracle": 1}

    def train(self, cfg, run_dir, mode=None, dpo=None):
        self.calls.append("train")
        checkpoint = f"train/{mode}/step-000001/state"
        self.seen[f"train_resumed_{mode}"] = (Path(run_dir) / checkpoint).exists()
        _touch(run_dir, checkpoint)
        if self.fail_train_once:
            self.fail_train_once = False
            raise RuntimeError("killed mid-training")
        _touch(run_dir, "adapters/joint/adapter_config.json")
        RunDir(run_dir).record_stage("train", outputs={"joint": "adapters/joint"}, config=cfg.train)
        return {"joint": {"steps": 2}}

    def baselines(self, cfg, run_dir, eval_run=None):
        self.calls.append("evaluate")
        _touch(run_dir, "predictions/popular.parquet")
        RunDir(run_dir).record_stage("baselines", outputs={"popular": "predictions/popular.parquet"},
                                     config=cfg.baselines)
        return {"popular": {}}

    def predict(self, cfg, run_dir, eval_run=None):
        self.calls.append("predict")
        _touch(run_dir, "predictions/joint.parquet")
        RunDir(run_dir).record_stage("predict", outputs={"joint": "predictions/joint.parquet"}, config=cfg.predict)
        return {"predictors": ["joint"]}

    def report(self, run_dir, bootstrap=1000, seed=0, eval_run=None):
        self.calls.append("report")
        _touch(run_dir, "report/report.md", "# report\n")
        RunDir(run_dir).record_stage("report", outputs={"report": "report/report.md"},
                                     config={"bootstrap_samples": bootstrap, "bootstrap_seed": seed})
        return {"report": str(Path(run_dir) / "report" / "report.md")}


@pytest.fixture
def fakes(monkeypatch):
    import jobpred.data.prepare
    import jobpred.data.synth
    import jobpred.eval
    import jobpred.reasons
    import jobpred.train

    f = FakeStages()
    monkeypatch.setattr(jobpred.data.synth, "write_synthetic", f.synth)
    monkeypatch.setattr(jobpred.data.prepare, "prepare", f.prepare)
    monkeypatch.setattr(jobpred.reasons, "run", f.reasons)
    monkeypatch.setattr(jobpred.train, "run", f.train)
    monkeypatch.setattr(jobpred.eval, "run_baselines", f.baselines)
    monkeypatch.setattr(jobpred.eval, "run_report", f.report)
    import jobpred.predict

    monkeypatch.setattr(jobpred.predict, "run", f.predict)
    return f


def _cfg(*overrides):
    return load_config(None, ["name=t", "synth.persons=3", *overrides])


def _ran(fakes) -> list[str]:
    """The stages called, with evaluate's LLM part folded into evaluate and one train per stage."""
    calls = [c for c in fakes.calls if c != "predict"]
    return [c for i, c in enumerate(calls) if i == 0 or c != calls[i - 1]]


def _actions(result) -> dict[str, str]:
    return {name: s["action"] for name, s in result["stages"].items()}


def test_a_first_run_runs_every_stage_in_order_and_says_where_the_report_is(fakes, tmp_path, capsys):
    result = pipeline.run_all(_cfg(), tmp_path / "r")
    assert _ran(fakes) == ALL and fakes.calls.count("predict") == 1
    assert _actions(result) == dict.fromkeys(ALL, "run")
    assert result["report"] == str(tmp_path / "r" / "report" / "report.md")
    out = capsys.readouterr().out
    assert "[1/6] synth    starting (not run yet)" in out and "[6/6] report   done in" in out
    assert f"report: {tmp_path / 'r' / 'report' / 'report.md'}" in out
    assert (tmp_path / "r" / "input" / "persons.jsonl").read_text().count("\n") == 3
    record = RunDir(tmp_path / "r").manifest()["stages"]["run"]
    assert list(record["stages"]) == ALL and record["config"]["name"] == "t"
    assert record["stages"]["reasons"]["entries"].keys() == {"reasons"}


def test_a_second_run_on_the_same_directory_skips_every_stage(fakes, tmp_path, capsys):
    pipeline.run_all(_cfg(), tmp_path / "r")
    fakes.calls.clear()
    result = pipeline.run_all(_cfg(), tmp_path / "r")
    assert fakes.calls == []
    assert _actions(result) == dict.fromkeys(ALL, "skip")
    assert "skipped: done" in capsys.readouterr().out


def test_force_prepare_redoes_prepare_and_every_later_stage_from_scratch(fakes, tmp_path):
    pipeline.run_all(_cfg(), tmp_path / "r")
    fakes.calls.clear()
    result = pipeline.run_all(_cfg(), tmp_path / "r", force={"prepare"})
    assert _ran(fakes) == ["prepare", "reasons", "train", "evaluate", "report"]
    assert _actions(result) == {"synth": "skip", **dict.fromkeys(ALL[1:], "redo")}
    assert result["stages"]["prepare"]["why"] == "forced" and result["stages"]["train"]["why"] == "after prepare"
    # redone = cleared first: reasons and train did not find (and resume) their old outputs
    assert fakes.seen["reasons_found_old_outputs"] is False and fakes.seen["train_resumed_joint"] is False
    fakes.calls.clear()
    assert _actions(pipeline.run_all(_cfg(), tmp_path / "r")) == dict.fromkeys(ALL, "skip")


def test_force_report_redoes_only_the_report(fakes, tmp_path):
    pipeline.run_all(_cfg(), tmp_path / "r")
    fakes.calls.clear()
    pipeline.run_all(_cfg(), tmp_path / "r", force={"report"})
    assert fakes.calls == ["report"]


def test_a_config_change_redoes_that_stage_and_the_ones_after_it(fakes, tmp_path):
    pipeline.run_all(_cfg(), tmp_path / "r")
    fakes.calls.clear()
    result = pipeline.run_all(_cfg("reasons.n_candidates=3"), tmp_path / "r")
    assert _ran(fakes) == ["reasons", "train", "evaluate", "report"]
    assert result["stages"]["reasons"]["why"] == "config changed"
    fakes.calls.clear()
    pipeline.run_all(_cfg("reasons.n_candidates=3", "baselines.bootstrap_seed=5"), tmp_path / "r")
    assert fakes.calls == ["report"]  # the bootstrap settings are the report's, not the predictions'
    fakes.calls.clear()
    pipeline.run_all(_cfg("reasons.n_candidates=3", "baselines.bootstrap_seed=5", "synth.persons=4"), tmp_path / "r")
    assert _ran(fakes) == ALL


def test_a_killed_run_continues_where_it_stopped_and_resumable_stages_keep_their_work(fakes, tmp_path, capsys):
    fakes.fail_train_once = True
    with pytest.raises(RuntimeError, match="killed"):
        pipeline.run_all(_cfg(), tmp_path / "r")
    assert "[4/6] train    FAILED after" in capsys.readouterr().out
    fakes.calls.clear()
    result = pipeline.run_all(_cfg(), tmp_path / "r")
    assert _ran(fakes) == ["train", "evaluate", "report"]
    assert result["stages"]["train"]["action"] == "run"
    assert "did not finish last time; resumes its committed work" in result["stages"]["train"]["why"]
    assert fakes.seen["train_resumed_joint"] is True


def test_a_stage_rerun_by_hand_in_between_invalidates_it_and_what_follows(fakes, tmp_path):
    run_dir = tmp_path / "r"
    pipeline.run_all(_cfg(), run_dir)
    RunDir(run_dir).record_stage("reasons", outputs={"oracle": "reasons/oracle.parquet"}, counts={"oracle": 9})
    fakes.calls.clear()
    result = pipeline.run_all(_cfg(), run_dir)
    assert _ran(fakes) == ["reasons", "train", "evaluate", "report"]
    assert "outside `jobpred run`" in result["stages"]["reasons"]["why"]


def test_redo_clears_old_outputs_and_manifest_entries_of_later_stages(fakes, tmp_path):
    run_dir = tmp_path / "r"
    pipeline.run_all(_cfg(), run_dir)
    _touch(run_dir, "predictions/stale-predictor.parquet")  # e.g. a predictor no longer configured
    pipeline.run_all(_cfg(), run_dir, force={"evaluate"})
    assert not (run_dir / "predictions" / "stale-predictor.parquet").exists()
    assert (run_dir / "adapters" / "joint").exists()  # earlier stages untouched


def test_real_input_replaces_synth(fakes, tmp_path):
    records = tmp_path / "records.parquet"
    records.write_text("")
    result = pipeline.run_all(_cfg(), tmp_path / "r", input_path=str(records))
    assert fakes.calls[0] == "prepare" and "synth" not in fakes.calls
    assert fakes.seen["prepare_input"] == (str(records), "parquet")
    assert result["stages"]["synth"] == {"action": "skip", "why": f"input given: {records}"}
    fakes.calls.clear()
    pipeline.run_all(_cfg(), tmp_path / "r", input_path=str(records), input_format="jobhop")
    assert _ran(fakes) == ALL[1:]  # another input format: prepare and everything after it again


def test_unknown_stage_names_are_errors(tmp_path):
    with pytest.raises(ValueError, match="not a stage"):
        pipeline.plan(_cfg(), tmp_path, force={"trian"})


def test_cli_run_defaults_and_force(fakes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--config", str(REPO / "configs" / "local.yaml"), "--quiet", "synth.persons=3"]) == 0
    assert (tmp_path / "runs" / "local" / "report" / "report.md").exists()
    fakes.calls.clear()
    assert cli.main(["run", "--config", str(REPO / "configs" / "local.yaml"), "--force", "train",
                     "--force", "report", "synth.persons=3"]) == 0
    assert _ran(fakes) == ["train", "evaluate", "report"]
    assert f"report: {Path.cwd() / 'runs' / 'local' / 'report' / 'report.md'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "--config", str(REPO / "configs" / "local.yaml"), "--force", "nope"])


# ---- the whole job for real ----------------------------------------------------------------------------

TINY = [
    "synth.persons=60", "reasons.max_examples=4", "reasons.n_candidates=2", "reasons.max_tokens=64",
    "reasons.commit_every=2", "reasons.judge_max_tokens=128", "train.max_examples=4", "train.max_steps=2",
    "train.max_length=640", "train.checkpoint_every=2", "train.dpo.enabled=false", "baselines.bootstrap_samples=50",
    "baselines.gru.epochs=1",
]


@pytest.mark.slow
@pytest.mark.integration
def test_jobpred_run_end_to_end_on_a_tiny_config(tmp_path, ray_session, capsys):
    overrides = TINY + ["predict.max_examples=4", "predict.max_tokens=64", "predict.judge_max_examples=2",
                        "predict.predictors=[zero-shot,joint,two-model]"]
    run_dir = tmp_path / "tiny"
    args = ["run", "--config", str(REPO / "configs" / "local.yaml"), "--run", str(run_dir), *overrides]
    started = time.perf_counter()
    assert cli.main(args) == 0
    seconds = time.perf_counter() - started
    out = capsys.readouterr().out
    print(f"jobpred run, tiny config: {seconds:.0f} s")
    report = run_dir / "report" / "report.md"
    assert f"report: {report}" in out and report.read_text().strip()
    stages = RunDir(run_dir).manifest()["stages"]
    assert {"synth", "prepare", "reasons", "train", "baselines", "report", "run"} <= set(stages)
    where = stages["run"]["stages"]["reasons"]["placement"]  # one node: every actor ran on the driver's
    assert where["actors"] == {"*": [where["driver"]]} and where["nodes"][where["driver"]]["head"]
    assert (run_dir / "adapters" / "joint" / "adapter_model.safetensors").exists()
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())["predictors"]
    assert {"popular", "stay", "markov", "gru"} <= set(metrics)
    assert {"zero-shot", "joint", "two-model"} <= set(metrics)
    assert (run_dir / "adapters" / "predictor" / "adapter_model.safetensors").exists()
    for path in (run_dir / "predictions").glob("*.parquet"):
        assert pl.read_parquet(path)["predicted_code"].null_count() == 0, path
    # the same command again: nothing to do
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("skipped: done") == 6


def test_train_covers_the_adapters_the_configured_predictors_need():
    assert stages.train_jobs(_cfg("train.dpo.enabled=false", "predict.predictors=[zero-shot,joint]")) == [
        ("joint", False)]
    assert stages.train_jobs(_cfg("train.mode=two-model", "predict.predictors=[joint-dpo]")) == [
        ("joint", True), ("two-model", False)]
    assert stages.train_jobs(_cfg("predict.predictors=[two-model-dpo]")) == [("joint", False), ("two-model", True)]
