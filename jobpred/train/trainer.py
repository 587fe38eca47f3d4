"""One adapter end to end on Ray Train: its data -> ``TorchTrainer`` -> ``RUN_DIR/adapters/<name>/``.

    summary = fit_adapter(cfg, run_dir, AdapterJob("joint", role="joint", objective="sft"))

Layout (per adapter ``<name>``):
    RUN_DIR/adapters/<name>/            adapter_config.json + adapter_model.safetensors (vLLM LoRARequest, peft)
    RUN_DIR/train/<name>/metrics.jsonl  one line per optimiser step (loss, lr, tokens/s, examples/s, ...)
    RUN_DIR/train/<name>/examples.parquet   every training row and what the cutoff rule did (TRAIN_EXAMPLES_SCHEMA)
    RUN_DIR/train/<name>/summary.json   data counts, loss curve ends, throughput, restarts
    RUN_DIR/train/<name>/config.json    the settings that shape the adapter (a resumed run must match them)
    <storage>/<name>/step-NNNNNN/       Ray Train checkpoints (storage: train.storage_path or RUN_DIR/train)

Started again after the job died (same command, same run directory), Ray Train finds the checkpoint
manager's snapshot in ``<storage>/<name>`` and the workers continue from the latest checkpoint; started
with settings that would train a different adapter, it refuses. An adapter already exported is not
trained again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from jobpred.config import JobpredConfig, TrainConfig
from jobpred.models import resolve_model
from jobpred.ray_utils import init_ray
from jobpred.rundir import RunDir, write_json_atomic
from jobpred.storage import Location, location, publish_files, scratch_dir, write_text_atomic
from jobpred.train import data
from jobpred.train.data import threads_per_worker, worker_runtime_env
from jobpred.train.loop import CURVE_FILE, read_metrics, train_loop

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md")
_NOT_SHAPING = ("log_every", "max_failures", "storage_path", "keep_checkpoints", "checkpoint_every",
                "accelerator_type", "threads_per_worker", "worker_niceness", "mode")


@dataclass(frozen=True)
class AdapterJob:
    name: str  # the adapter's directory name: joint, joint-dpo, reasoner, reasoner-dpo, predictor
    role: str  # prompt/target format (jobpred.train.formats.ROLES)
    objective: str  # sft | dpo
    init_from: str | None = None  # DPO: the SFT adapter it starts from (and its frozen reference)


def _hyper(tc: TrainConfig, job: AdapterJob) -> dict:
    """lr, epochs, max_steps, batch size of this job (DPO has its own)."""
    if job.objective == "dpo":
        return {"lr": tc.dpo.lr, "epochs": tc.dpo.epochs, "max_steps": tc.dpo.max_steps,
                "batch_size": tc.dpo.batch_size or tc.batch_size}
    return {"lr": tc.lr, "epochs": tc.epochs, "max_steps": tc.max_steps, "batch_size": tc.batch_size}


def fingerprint(cfg: JobpredConfig, job: AdapterJob, data_digest: str) -> dict:
    tc = cfg.train.model_dump(mode="json", exclude=set(_NOT_SHAPING))
    if job.objective == "sft":
        tc.pop("dpo")
    return {"model": cfg.adapter_base, "job": job.__dict__, "train": tc, "data": data_digest,
            "history_format": cfg.history_format}


def _check_fingerprint(out_dir: Location, mine: dict) -> None:
    """Refuse to resume checkpoints made with other settings; without checkpoints, just record ``mine``."""
    path = out_dir / "config.json"
    if path.exists() and any(out_dir.glob("step-*")):
        theirs = json.loads(path.read_text())
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(f"{out_dir} was trained with different settings ({', '.join(diff)}); use a new run "
                             f"directory, or delete {out_dir} and its adapter to train it again")
        return
    write_text_atomic(path, json.dumps(mine, indent=2) + "\n")


def table_digest(table: pa.Table) -> str:
    """Digest of the training table's content (a re-run of `jobpred reasons` changes it)."""
    h = hashlib.blake2b(digest_size=8)
    for batch in table.drop_columns(["idx"]).to_batches():
        h.update(json.dumps(batch.to_pylist(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def fit_adapter(cfg: JobpredConfig, run_dir: str | os.PathLike, job: AdapterJob) -> dict:
    """Train (or resume, or skip when already exported) one adapter; returns its summary."""
    tc, run = cfg.train, RunDir(run_dir)
    out_dir, adapter_dir = run.path / "train" / job.name, run.path / "adapters" / job.name
    table = (data.sft_table if job.objective == "sft" else data.dpo_table)(run_dir, job.role, tc)
    _check_fingerprint(out_dir, fingerprint(cfg, job, table_digest(table)))
    done = _finished_summary(adapter_dir, out_dir)
    if done is not None:
        return {**done, "skipped": "already trained"}
    started = time.perf_counter()
    model_path = resolve_model(cfg.adapter_base)
    init_adapter = str(run.path / "adapters" / job.init_from) if job.init_from else None
    if init_adapter and not (location(init_adapter) / "adapter_config.json").exists():
        raise FileNotFoundError(f"{job.name} starts from the {job.init_from} adapter, which is not in {run.path}")
    init_ray(cfg.ray)
    timings = {}
    t = time.perf_counter()
    ds, examples = data.tokenize(table, job.role, job.objective, model_path, tc, reference_adapter=init_adapter,
                                 history_format=cfg.history_format)
    data.write_examples(examples, out_dir / "examples.parquet")
    used = ds.count()
    if used < tc.num_workers:
        raise ValueError(f"{job.name}: {used} usable rows (of {table.num_rows}) for {tc.num_workers} workers; "
                         f"raise train.max_length or add oracle rows")
    hyper = _hyper(tc, job)
    plan = data.StepPlan(rows_per_worker=used // tc.num_workers, batch_size=hyper["batch_size"],
                         grad_accum=tc.grad_accum, epochs=hyper["epochs"], max_steps=hyper["max_steps"], seed=tc.seed)
    spec = build_spec(cfg, job, model_path, init_adapter, plan, out_dir)
    timings["data_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    result = _trainer(tc, job, spec, ds, run).fit()
    timings["fit_s"] = round(time.perf_counter() - t, 1)
    curve = _export(result.checkpoint, adapter_dir)
    _mend_metrics(out_dir / CURVE_FILE, curve)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    summary = _summary(job, table.num_rows, examples, used, plan, out_dir, timings)
    write_json_atomic(out_dir / "summary.json", summary)  # written last: its presence means "done"
    return summary


def _finished_summary(adapter_dir: Location, out_dir: Location) -> dict | None:
    """The summary of an adapter trained and exported to the end, or None (not yet, or cut short by a kill)."""
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    complete = all((adapter_dir / name).exists() for name in ("adapter_config.json", "adapter_model.safetensors"))
    return summary if complete else None


def _mend_metrics(path: Location, curve: list[dict]) -> None:
    """Make ``metrics.jsonl`` hold every step of the final checkpoint's curve: the file is appended by rank 0
    as it goes, so a kill can leave it cut short, or (an older run) missing; lines already there are kept."""
    rows = read_metrics(path)
    have = {row["step"] for row in rows}
    missing = [row for row in curve if row["step"] not in have]
    if missing or not path.exists():
        rows += missing
        write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def build_spec(cfg: JobpredConfig, job: AdapterJob, model_path: str, init_adapter: str | None,
               plan, out_dir: Location) -> dict:
    """What every worker receives (plain types)."""
    from transformers import AutoTokenizer


    tc = cfg.train
    return {"name": job.name, "objective": job.objective, "role": job.role, "model_path": model_path,
            "init_adapter": init_adapter, "train": tc.model_dump(mode="json"), "plan": plan.__dict__,
            "lr": _hyper(tc, job)["lr"], "beta": tc.dpo.beta, "threads": threads_per_worker(tc), "out_dir": str(out_dir),
            "pad_token_id": AutoTokenizer.from_pretrained(model_path).pad_token_id}


def _trainer(tc: TrainConfig, job: AdapterJob, spec: dict, ds, run: RunDir):
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer


    storage = location(tc.storage_path) if tc.storage_path else run.path / "train"  # Ray Train takes s3:// too
    scaling = ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                            resources_per_worker=dict(tc.resources_per_worker),
                            accelerator_type=tc.accelerator_type)
    run_config = RunConfig(name=job.name, storage_path=str(storage),
                           failure_config=FailureConfig(max_failures=tc.max_failures),
                           checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints),
                           worker_runtime_env=worker_runtime_env(tc))
    # preserve_order: the equal split hands every worker the same rows in every attempt (see data.py)
    data_config = DataConfig(execution_options=ExecutionOptions(preserve_order=True))
    return TorchTrainer(train_loop, train_loop_config=spec, scaling_config=scaling, run_config=run_config,
                        datasets={"train": ds}, dataset_config=data_config)


def _export(checkpoint, adapter_dir: Location) -> list[dict]:
    """Copy the adapter files of the final checkpoint into ``adapter_dir`` (atomically); returns the
    checkpoint's curve (the metrics of every step up to it)."""
    if checkpoint is None:
        raise RuntimeError("Ray Train returned no checkpoint: the run reported none")
    with checkpoint.as_directory() as src:
        src = Path(src)
        if not (src / "adapter_model.safetensors").exists():
            raise RuntimeError(f"checkpoint {checkpoint.path} has no adapter_model.safetensors")
        publish_files({name: src / name for name in ADAPTER_FILES if (src / name).exists()}, adapter_dir)
        return read_metrics(src / CURVE_FILE)


def read_curve(metrics_path: Location) -> list[dict]:
    """The metrics of each step, the last line written for it (a replayed step overwrites the earlier one)."""
    steps = {row["step"]: row for row in read_metrics(metrics_path)}
    return [steps[k] for k in sorted(steps)]


def _summary(job: AdapterJob, rows: int, examples: pa.Table, used: int, plan, out_dir: Location,
             timings: dict) -> dict:
    curve = read_curve(out_dir / "metrics.jsonl")
    starts = read_metrics(scratch_dir(out_dir) / "workers" / "rank-0.jsonl")  # where rank 0 logged them
    if not curve:
        raise RuntimeError(f"{out_dir}: no step metrics, neither in metrics.jsonl nor in the final checkpoint")
    steady = curve[1:] or curve  # the first step pays for warm-up
    dropped = examples.column("dropped_jobs").to_pylist()
    metrics = {"steps": len(curve), "first_loss": curve[0]["loss"], "last_loss": curve[-1]["loss"],
               "min_loss": min(r["loss"] for r in curve),
               "tokens_per_s": round(sum(r["tokens"] for r in steady) / sum(r["seconds"] for r in steady), 1),
               "examples_per_s": round(sum(r["examples"] for r in steady) / sum(r["seconds"] for r in steady), 3)}
    if job.objective == "dpo":
        metrics.update({k: curve[-1][k] for k in ("reward_accuracy", "reward_margin")})
    return {"adapter": job.name, "role": job.role, "objective": job.objective, "init_from": job.init_from,
            "rows": rows, "used": used, "skipped_too_long": rows - used,
            "history_jobs_dropped": sum(d or 0 for d in dropped), "rows_per_worker": plan.rows_per_worker,
            "steps_per_epoch": plan.steps_per_epoch, "total_steps": plan.total_steps, "metrics": metrics,
            "worker_group_starts": len(starts), "timings": timings,
            "train_s": round(sum(r["seconds"] for r in curve), 1)}
