"""The main job: synth -> prepare -> reasons -> train -> evaluate -> report in one call, skipping what is done.

Run as:
    jobpred run --config configs/local.yaml                     # = `make demo`; run directory runs/<name>
    jobpred run --config configs/local.yaml --run runs/demo --force train
    jobpred run --config configs/local.yaml --input data/jobhop.csv --format jobhop     # real data, no synth
    ray job submit --working-dir . -- python -m pipelines.run --config configs/cluster-qwen3-8b.yaml --run RUN

| stage    | does                                                     | config it reads          | outputs (RUN_DIR/) |
|----------|----------------------------------------------------------|--------------------------|--------------------|
| synth    | synthetic persons (skipped with ``input``)               | synth                    | input/persons.jsonl |
| prepare  | validate, normalise titles, examples, splits             | prepare, the input       | examples/ ...      |
| reasons  | oracle reasons (teacher, judge, selection, DPO pairs)    | reasons                  | reasons/           |
| train    | LoRA adapters on Ray Train (see train_jobs)              | model, train, predictors | adapters/, train/  |
| evaluate | baselines + LLM predictors on the test split             | model, baselines, predict| predictions/       |
| report   | scores, CIs, plots                                       | bootstrap settings       | report/            |

**Skipping.** When a stage finishes, the ``run`` entry of ``manifest.json`` gets its key: a hash of the
config it reads chained with the previous stage's key (so a change upstream changes every key below it),
and a digest of the manifest entries it wrote. A stage is skipped when its key is the same and
those entries are untouched (a stage re-run by hand in between, e.g. ``jobpred prepare``, invalidates it).

**Re-doing.** The first stage that is not skipped runs, and every stage after it runs too, since its
inputs may have changed. A stage that never finished (a `jobpred run` killed in it) runs on its outputs so
far: reasons and train resume their committed work, the others start over. A stage whose config changed,
or named in ``force``, is redone from scratch: its outputs and those of all later stages are deleted and
their manifest entries dropped before it starts. So ``--force prepare`` redoes prepare, reasons, train,
evaluate and report; ``--force report`` only the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from jobpred import stages
from jobpred.config import JobpredConfig
from jobpred.rundir import RunDir, absolute
from jobpred.stages import train_jobs

RECORD = "run"  # the manifest entry this module keeps: one key per finished stage


@dataclass(frozen=True)
class Stage:
    name: str
    roots: tuple[str, ...]  # outputs, relative to RUN_DIR: deleted when redone; manifest entries under them are its


STAGES = (
    Stage("synth", ("input/persons.jsonl", "input/persons.jsonl.traits.parquet")),
    Stage("prepare", ("examples", "rejected.jsonl", "summary.json")),
    Stage("reasons", ("reasons",)),
    Stage("train", ("adapters", "train")),
    Stage("evaluate", ("predictions", "predict", "ray_train")),
    Stage("report", ("report",)),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
SYNTH_INPUT = "input/persons.jsonl"
_RESUMABLE = ("reasons", "train")  # stages that pick up their own committed work when run again


def sections(cfg: JobpredConfig, stage: str, input_spec: dict) -> dict:
    """The config a stage reads, as JSON-able data (what its key hashes)."""
    if stage == "synth":
        return {"synth": cfg.synth.model_dump(mode="json")}
    if stage == "prepare":
        return {"prepare": cfg.prepare.model_dump(mode="json"), "input": input_spec}
    if stage == "reasons":
        return {"reasons": cfg.reasons.model_dump(mode="json")}
    if stage == "train":
        return {"model": cfg.model, "train": cfg.train.model_dump(mode="json"), "jobs": train_jobs(cfg)}
    if stage == "evaluate":
        return {"model": cfg.model, "predict": cfg.predict.model_dump(mode="json"),
                "judge": cfg.reasons.judge.model_dump(mode="json"),
                "baselines": cfg.baselines.model_dump(mode="json", exclude={"bootstrap_samples", "bootstrap_seed"})}
    if stage == "report":
        return {"bootstrap_samples": cfg.baselines.bootstrap_samples, "bootstrap_seed": cfg.baselines.bootstrap_seed}
    raise ValueError(f"unknown stage {stage!r}; expected one of {STAGE_NAMES}")


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_keys(cfg: JobpredConfig, input_spec: dict) -> dict[str, dict]:
    """Stage -> {"key": chained hash, "config": hash of its own sections}."""
    keys, previous = {}, ""
    for stage in STAGE_NAMES:
        own = _digest(sections(cfg, stage, input_spec))
        previous = _digest([previous, own])
        keys[stage] = {"key": previous, "config": own}
    return keys


def _entries(manifest: dict, stage: Stage) -> dict[str, str]:
    """Manifest entries written by ``stage`` (those with an output under its roots): name -> digest."""
    found = {}
    for name, entry in manifest["stages"].items():
        outputs = entry.get("outputs") or {}
        if any(_under(rel, stage.roots) for rel in outputs.values()):
            found[name] = _digest(entry)
    return found


def _under(rel: str, roots: tuple[str, ...]) -> bool:
    parts = Path(rel).parts
    return any(parts[: len(Path(r).parts)] == Path(r).parts for r in roots)


def _status(stage: Stage, done: dict | None, keys: dict, manifest: dict, force: set[str],
            run_dir: Path) -> tuple[str, str]:
    """('skip' | 'run' | 'redo', why) for one stage, looking only at itself."""
    if stage.name in force:
        return "redo", "forced"
    if done is None:
        if any((run_dir / r).exists() for r in stage.roots):
            how = "resumes its committed work" if stage.name in _RESUMABLE else "starts over"
            return "run", f"it did not finish last time; {how}"
        return "run", "not run yet"
    if done["key"] != keys["key"]:
        own = "config changed" if done.get("config") != keys["config"] else "an earlier stage changed"
        return "redo", own
    now = {n: _digest(manifest["stages"][n]) for n in done["entries"] if n in manifest["stages"]}
    if now != done["entries"]:
        return "redo", "its outputs were rewritten or removed outside `jobpred run`"
    return "skip", f"done {done['finished_at']} with the same config"


def plan(cfg: JobpredConfig, run_dir, force: set[str] = frozenset(), input_spec: dict | None = None,
         ) -> list[tuple[Stage, str, str]]:
    """(stage, action, why) for every stage: skip, run (on what is there) or redo (clear it first)."""
    unknown = set(force) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"--force {', '.join(sorted(unknown))}: not a stage; stages are {', '.join(STAGE_NAMES)}")
    input_spec = input_spec or {"synth": SYNTH_INPUT}
    run = RunDir(run_dir)
    manifest = run.manifest()
    record = manifest["stages"].get(RECORD, {}).get("stages", {})
    keys = stage_keys(cfg, input_spec)
    out: list[tuple[Stage, str, str]] = []
    first: tuple[str, str] | None = None  # the first stage that runs: (name, action)
    for stage in STAGES:
        if stage.name == "synth" and "synth" not in input_spec:
            out.append((stage, "skip", f"input given: {input_spec['path']}"))
            continue
        action, why = _status(stage, record.get(stage.name), keys[stage.name], manifest, force, run.path)
        if first is not None and action == "skip":
            action, why = "redo", f"after {first[0]}"
        if first is not None and action == "run" and first[1] == "redo":
            action = "redo"  # its partial outputs came from inputs that are being replaced
        if first is None and action != "skip":
            first = (stage.name, action)
        out.append((stage, action, why))
    return out


def run_all(cfg: JobpredConfig, run_dir, force: set[str] = frozenset(), progress: bool = True,
            input_path: str | None = None, input_format: str | None = None) -> dict:
    """Run every stage that is not already done with this config; returns what each did and the report path.

    ``input_path`` (with ``input_format``: jsonl, parquet, jobhop, karrierewege, decorte) prepares real
    career records instead of synthesizing them.
    """
    run = RunDir(run_dir)  # absolute from here on: the stages hand it to Ray workers
    input_spec = ({"path": str(absolute(input_path)), "format": stages.input_format_of(input_path, input_format)}
                  if input_path else {"synth": SYNTH_INPUT})
    steps = plan(cfg, run.path, set(force), input_spec)
    keys = stage_keys(cfg, input_spec)
    say = print if progress else (lambda *a, **k: None)
    say(f"jobpred run: config {cfg.name!r}, run directory {run.path}", flush=True)
    redo = [stage for stage, action, _ in steps if action == "redo"]
    if redo:
        _clear(run, cfg, redo)
    started, summary = time.perf_counter(), {}
    for i, (stage, action, why) in enumerate(steps, 1):
        tag = f"[{i}/{len(steps)}] {stage.name:<8}"
        if action == "skip":
            say(f"{tag} skipped: {why}", flush=True)
            summary[stage.name] = {"action": "skip", "why": why}
            continue
        say(f"{tag} {'redoing' if action == 'redo' else 'starting'} ({why})", flush=True)
        t = time.perf_counter()
        try:
            result = _RUNNERS[stage.name](cfg, run.path, input_spec, progress)
        except BaseException:
            say(f"{tag} FAILED after {_fmt(time.perf_counter() - t)}", flush=True)
            raise
        seconds = round(time.perf_counter() - t, 1)
        _remember(run, cfg, stage, keys[stage.name], seconds)
        say(f"{tag} done in {_fmt(seconds)}", flush=True)
        summary[stage.name] = {"action": action, "why": why, "seconds": seconds, "result": result}
    report = run.output("report", "report")
    total = round(time.perf_counter() - started, 1)
    say(f"report: {report}  (this run took {_fmt(total)})", flush=True)
    return {"run_dir": str(run.path), "report": str(report), "seconds": total, "stages": summary}


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _clear(run: RunDir, cfg: JobpredConfig, stages: list[Stage]) -> None:
    """Delete the outputs and manifest entries of stages about to be redone, and their `run` records."""
    manifest = run.manifest()
    roots = [run.path / r for s in stages for r in s.roots]
    if "train" in {s.name for s in stages} and cfg.train.storage_path:
        # Ray Train checkpoints outside the run directory: they would be resumed by a redone train
        from jobpred.train import plan_jobs

        roots += [absolute(cfg.train.storage_path) / j.name for m, d in train_jobs(cfg) for j in plan_jobs(m, d)]
    for path in roots:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    run.forget_stages(sorted({name for s in stages for name in _entries(manifest, s)}))
    entry = run.manifest()["stages"].get(RECORD)
    if entry:
        done = {k: v for k, v in entry.get("stages", {}).items() if k not in {s.name for s in stages}}
        run.record_stage(RECORD, outputs={}, config=entry["config"], extra={"stages": done})


def _remember(run: RunDir, cfg: JobpredConfig, stage: Stage, keys: dict, seconds: float) -> None:
    """Add one finished stage to the manifest's `run` entry (the other stages' records are kept)."""
    manifest = run.manifest()
    done = manifest["stages"].get(RECORD, {}).get("stages", {})
    done[stage.name] = {**keys, "entries": _entries(manifest, stage), "seconds": seconds,
                        "finished_at": _now()}
    run.record_stage(RECORD, outputs={}, config=cfg, extra={"stages": done})


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---- the stages: each calls the function of jobpred.stages that its own command calls --------------------


def _synth(cfg: JobpredConfig, run_dir: Path, input_spec: dict, progress: bool) -> dict:
    summary = stages.synth(cfg, run_dir / SYNTH_INPUT, progress=progress)
    # synth writes no manifest entry of its own (it has no run directory); this one makes it skippable
    RunDir(run_dir).record_stage("synth", outputs={"persons": SYNTH_INPUT}, config=cfg.synth,
                                 counts={k: v for k, v in summary.items() if isinstance(v, int)})
    return summary


def _prepare(cfg: JobpredConfig, run_dir: Path, input_spec: dict, progress: bool) -> dict:
    if "synth" in input_spec:
        return stages.prepare(cfg, run_dir / SYNTH_INPUT, run_dir, input_format="jsonl")
    return stages.prepare(cfg, input_spec["path"], run_dir, input_format=input_spec["format"])


def _reasons(cfg: JobpredConfig, run_dir: Path, input_spec: dict, progress: bool) -> dict:
    return stages.reasons(cfg, run_dir)


def _train(cfg: JobpredConfig, run_dir: Path, input_spec: dict, progress: bool) -> dict:
    return stages.train(cfg, run_dir)


def _evaluate(cfg: JobpredConfig, run_dir: Path, input_spec: dict, progress: bool) -> dict:
    return stages.evaluate(cfg, run_dir)


def _report(cfg: JobpredConfig, run_dir: Path, input_spec: dict, progress: bool) -> dict:
    return stages.report(cfg, run_dir)


_RUNNERS = {"synth": _synth, "prepare": _prepare, "reasons": _reasons, "train": _train, "evaluate": _evaluate,
            "report": _report}


def default_run_dir(cfg: JobpredConfig) -> str:
    return os.path.join("runs", cfg.name)
