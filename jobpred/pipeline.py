"""The main job: synth -> prepare -> reasons -> train -> evaluate -> report in one call, skipping what is done.

Run as:
    jobpred run --config configs/local.yaml                     # = `make demo`; run directory runs/<name>
    jobpred run --config configs/local.yaml --run runs/demo --force train
    jobpred run --config configs/local.yaml --input data/jobhop.csv --format jobhop     # real data, no synth
    ray job submit --working-dir . -- python -m pipelines.run --config configs/cluster-qwen3-8b.yaml --run RUN

The stages are :data:`jobpred.stages.STAGES` (synth, prepare, reasons, train, evaluate, report): each
says what config it reads (``Stage.reads``, plus the input for prepare) and what it writes
(``Stage.outputs``); this module only decides what to skip, clears what is redone and keeps its records.
Synth is skipped when an ``input`` is given.

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

**Where it ran.** Each stage's record in the ``run`` entry has ``placement``: the node of its driver and the
nodes of the actors it started, by what they run (``MapWorker(MapBatches(vLLMEngineStageUDF))`` is a vLLM
engine replica), with each node's address, whether it is the head and its custom resources
(:class:`jobpred.ray_utils.WorkPlacement`). On a cluster that is how to check that the LLM stages ran where
their ``placement_bundles`` asked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path

from jobpred.config import JobpredConfig
from jobpred.ray_utils import WorkPlacement
from jobpred.rundir import RunDir
from jobpred.stages import STAGE, STAGE_NAMES, STAGES, SYNTH_INPUT, Stage, input_format_of, train_jobs
from jobpred.storage import location, remove_tree
from jobpred.train import plan_jobs

RECORD = "run"  # the manifest entry this module keeps: one key per finished stage


def sections(cfg: JobpredConfig, stage: str, input_spec: dict) -> dict:
    """The config a stage reads, as JSON-able data (what its key hashes); prepare's includes its input."""
    if stage not in STAGE:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGE_NAMES}")
    own = STAGE[stage].reads(cfg)
    return {**own, "input": input_spec} if stage == "prepare" else own


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
        if any(_under(rel, stage.outputs) for rel in outputs.values()):
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
        if any((run_dir / r).exists() for r in stage.outputs):
            how = "resumes its committed work" if stage.resumable else "starts over"
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
    input_spec = ({"path": str(location(input_path)), "format": input_format_of(input_path, input_format)}
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
        where = WorkPlacement()
        try:
            result = stage.run(cfg, run.path, **_options(stage, input_spec, progress))
        except BaseException:
            say(f"{tag} FAILED after {_fmt(time.perf_counter() - t)}", flush=True)
            raise
        seconds = round(time.perf_counter() - t, 1)
        _remember(run, cfg, stage, keys[stage.name], seconds, where.record())
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
    roots = [run.path / r for s in stages for r in s.outputs]
    if "train" in {s.name for s in stages} and cfg.train.storage_path:
        # Ray Train checkpoints outside the run directory: they would be resumed by a redone train
        roots += [location(cfg.train.storage_path) / j.name for m, d in train_jobs(cfg) for j in plan_jobs(m, d)]
    for path in roots:
        if path.is_file():
            path.unlink()
        else:
            remove_tree(path)
    run.forget_stages(sorted({name for s in stages for name in _entries(manifest, s)}))
    entry = run.manifest()["stages"].get(RECORD)
    if entry:
        done = {k: v for k, v in entry.get("stages", {}).items() if k not in {s.name for s in stages}}
        run.record_stage(RECORD, outputs={}, config=entry["config"], extra={"stages": done})


def _remember(run: RunDir, cfg: JobpredConfig, stage: Stage, keys: dict, seconds: float,
              placement: dict | None) -> None:
    """Add one finished stage to the manifest's `run` entry (the other stages' records are kept), with
    where its work ran (:class:`jobpred.ray_utils.WorkPlacement`)."""
    manifest = run.manifest()
    done = manifest["stages"].get(RECORD, {}).get("stages", {})
    done[stage.name] = {**keys, "entries": _entries(manifest, stage), "seconds": seconds,
                        "finished_at": _now(), "placement": placement}
    run.record_stage(RECORD, outputs={}, config=cfg, extra={"stages": done})


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _options(stage: Stage, input_spec: dict, progress: bool) -> dict:
    """The options `jobpred run` gives a stage: its defaults, but for the input and the progress bar."""
    if stage.name == "synth":
        return {"quiet": not progress}
    if stage.name == "prepare" and "synth" not in input_spec:
        return {"input": input_spec["path"], "input_format": input_spec["format"]}
    return {}


def default_run_dir(cfg: JobpredConfig) -> str:
    return os.path.join("runs", cfg.name)
