"""One code path per stage: `jobpred <stage>`, the stage of `jobpred run` and `python -m pipelines.<stage>`
call the same function of `jobpred.stages` with the same inputs, and every path they hand on is absolute.

The stage functions are replaced by recorders here (this tests the dispatch around them); the real stages
run through these same entry points in tests/test_demo.py (the smoke run and its twins), test_train.py
(`pipelines.train` killed and rerun) and test_reasons_integration.py (`pipelines.reasons` killed and rerun).
"""

import inspect
import json
import runpy
import sys
from pathlib import Path

import pytest

from jobpred import cli, stages
from jobpred.config import load_config
from jobpred.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "smoke.yaml")
STAGE_FUNCTIONS = ("synth", "prepare", "reasons", "train", "evaluate", "report")


class Recorder:
    """Stands in for the body of every stage (``Stage.fn``); remembers (stage, args) with paths as given."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, dict]] = []
        for stage in stages.STAGES:
            monkeypatch.setattr(stage, "fn", self._make(stage.name, stage.fn))

    def _make(self, name, fn):
        signature = inspect.signature(fn)

        def record(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()  # f(cfg, run) and f(cfg, run, eval_run=None) are the same call
            given = dict(bound.arguments)
            cfg = given.pop("cfg")
            self.calls.append((name, {"cfg": cfg.model_dump(mode="json"),
                                      **{k: str(v) if isinstance(v, Path) else v for k, v in given.items()}}))
            run_dir = given["run_dir"]
            if name == "synth":  # the pipeline checks that its outputs exist before it records them
                out = Path(given["out"] or run_dir / stages.SYNTH_INPUT)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("{}\n")
            if name == "report":
                run = RunDir(run_dir)
                (run.path / "report").mkdir(parents=True, exist_ok=True)
                (run.path / "report" / "report.md").write_text("# r\n")
                run.record_stage("report", outputs={"report": "report/report.md"})
            return {}
        return record

    def take(self) -> list[tuple[str, dict]]:
        calls, self.calls = self.calls, []
        return calls


def _module(monkeypatch, name: str, argv: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", [f"pipelines/{name}.py", *argv])
    with pytest.raises(SystemExit) as done:
        runpy.run_module(f"pipelines.{name}", run_name="__main__")
    assert done.value.code == 0


CASES = {
    "synth": ["--config", SMOKE, "--out", "data/persons.jsonl", "--quiet"],
    "prepare": ["--config", SMOKE, "--input", "data/persons.jsonl", "--run", "runs/x"],
    "reasons": ["--config", SMOKE, "--run", "runs/x"],
    "train": ["--config", SMOKE, "--run", "runs/x"],
    "evaluate": ["--config", SMOKE, "--run", "runs/x"],
    "report": ["--config", SMOKE, "--run", "runs/x"],
}


@pytest.mark.parametrize("stage", list(CASES))
def test_the_cli_and_the_ray_job_module_call_the_same_function_with_the_same_inputs(stage, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    rec = Recorder(monkeypatch)
    assert cli.main([stage, *CASES[stage]]) == 0
    from_cli = rec.take()
    _module(monkeypatch, stage, CASES[stage])
    assert rec.take() == from_cli
    assert from_cli[0][0] == stage  # evaluate then also calls report, as `jobpred evaluate` documents


def test_jobpred_run_calls_each_stage_function_as_its_subcommand_does(monkeypatch, tmp_path):
    """The inputs `jobpred run` gives each stage are those of the subcommand run on the same directory."""
    monkeypatch.chdir(tmp_path)
    rec = Recorder(monkeypatch)
    assert cli.main(["run", "--config", SMOKE, "--run", "runs/x", "--quiet"]) == 0
    by_stage = {name: args for name, args in rec.take()}
    assert list(by_stage) == list(STAGE_FUNCTIONS)
    run = str(tmp_path / "runs" / "x")
    for stage in STAGE_FUNCTIONS:
        assert cli.main([stage, "--config", SMOKE, "--run", "runs/x", *(["--quiet"] if stage == "synth" else [])]) == 0
        alone = rec.take()[0][1]
        # the relative --run reaches the stage body resolved, as the pipeline's absolute one does
        assert alone == by_stage[stage], stage
        assert alone["run_dir"] == run
    assert by_stage["prepare"]["input"] is None and by_stage["synth"]["out"] is None  # defaults: in the run


def test_a_run_directory_is_absolute_from_the_moment_it_is_opened(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert RunDir("runs/demo").path == tmp_path / "runs" / "demo"
    assert RunDir(Path("a") / ".." / "b").path == tmp_path / "b"
    assert RunDir("~/r").path == Path.home() / "r"
    monkeypatch.chdir("/")  # a Ray worker's working directory is not the driver's
    assert RunDir(tmp_path / "runs" / "demo").path == tmp_path / "runs" / "demo"


def test_the_train_stage_trains_what_jobpred_run_trains_unless_a_mode_is_named(monkeypatch, tmp_path):
    import jobpred.train

    calls = []
    monkeypatch.setattr(jobpred.train, "run", lambda cfg, run_dir, mode, dpo: calls.append(
        (str(run_dir), mode, dpo)) or {f"{mode}-adapter": {}})
    cfg = load_config(SMOKE, ["predict.predictors=[joint,two-model]"])
    monkeypatch.chdir(tmp_path)
    assert stages.STAGE["train"].run(cfg, "r") == {"joint-adapter": {}, "two-model-adapter": {}}
    assert calls == [(str(tmp_path / "r"), "joint", False), (str(tmp_path / "r"), "two-model", False)]
    calls.clear()
    stages.STAGE["train"].run(cfg, "r", mode="two-model", dpo=True)
    assert calls == [(str(tmp_path / "r"), "two-model", True)]


def test_input_formats_are_inferred_once_and_checked():
    assert stages.input_format_of("x.parquet") == "parquet"
    assert stages.input_format_of("x.jsonl") == stages.input_format_of("dir") == "jsonl"
    assert stages.input_format_of("x.csv", "jobhop") == "jobhop"
    with pytest.raises(ValueError, match="expected one of"):
        stages.input_format_of("x", "csv")


def test_an_empty_input_is_a_clear_error_not_a_ray_crash(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="has no records"):
        stages.STAGE["prepare"].run(load_config(None, ["prepare.engine=ray"]), tmp_path / "r", input=empty)
    assert cli.main(["prepare", "--input", str(empty), "--run", str(tmp_path / "r")]) == 2


def test_every_stage_is_one_object_behind_its_subcommand_and_its_ray_job_module():
    cfg = load_config(SMOKE)
    parser = cli.build_parser()
    for stage in stages.STAGES:
        assert json.loads(json.dumps(stage.reads(cfg))) and stage.outputs, stage.name
        args = parser.parse_args([stage.name, "--run", "r"])
        assert args.func.args == (stage,)  # the subcommand is that object's run
        body = (REPO / "pipelines" / f"{stage.name}.py").read_text().rsplit('"""', 1)[1]
        code = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(code) <= 5 and f'main(["{stage.name}", *sys.argv[1:]])' in body, stage.name
