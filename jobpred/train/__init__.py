"""LoRA fine-tuning on oracle reasons with Ray Train: SFT (joint or two-model), then optionally DPO.

Run as:
    jobpred train --config configs/local.yaml --run runs/local      # every adapter the predictors need
    jobpred train --config configs/local.yaml --run runs/local --mode two-model --dpo   # one mode
    ray job submit --working-dir . -- python -m pipelines.train --config configs/gpu-cluster.yaml --run RUN

Adapters (``RUN_DIR/adapters/<name>/``, each a peft LoRA directory that vLLM loads with ``LoRARequest``):

| mode        | SFT adapters                                                     | with DPO        |
|-------------|------------------------------------------------------------------|-----------------|
| ``joint``     | ``joint``: history -> ``<think>`` reason ``</think><answer>`` title ``</answer>`` | ``joint-dpo``     |
| ``two-model`` | ``reasoner``: history -> reason block; ``predictor``: history + oracle reason -> answer block | ``reasoner-dpo`` |

Prompts and targets: :mod:`.formats`; data and its order: :mod:`.data`; losses: :mod:`.objectives`; the
per-worker loop, checkpoints and metrics: :mod:`.loop`; one adapter on a ``TorchTrainer``: :mod:`.trainer`.
Each adapter is registered in the manifest (stage ``train``) with its base model, mode, data and metrics;
adapters already trained with the same settings are skipped, interrupted ones resume.
"""

from __future__ import annotations

import os

from jobpred.config import JobpredConfig
from jobpred.models import resolve_model
from jobpred.rundir import RunDir
from jobpred.train import trainer
from jobpred.train.formats import role_prompt_version
from jobpred.train.trainer import AdapterJob

MODES = ("joint", "two-model")


def plan_jobs(mode: str, dpo: bool) -> list[AdapterJob]:
    """The adapters a mode trains, in dependency order."""
    if mode == "joint":
        jobs = [AdapterJob("joint", "joint", "sft")]
        return jobs + [AdapterJob("joint-dpo", "joint", "dpo", init_from="joint")] if dpo else jobs
    if mode == "two-model":
        jobs = [AdapterJob("reasoner", "reasoner", "sft"), AdapterJob("predictor", "predictor", "sft")]
        return jobs + [AdapterJob("reasoner-dpo", "reasoner", "dpo", init_from="reasoner")] if dpo else jobs
    raise ValueError(f"unknown train mode {mode!r}; expected one of {MODES}")


def run(cfg: JobpredConfig, run_dir: str | os.PathLike, mode: str | None = None, dpo: bool | None = None) -> dict:
    """Train the adapters of ``mode`` (default ``train.mode``), plus DPO when ``dpo`` (default
    ``train.dpo.enabled``); register each in the manifest as soon as it is exported."""
    mode = mode or cfg.train.mode
    dpo = cfg.train.dpo.enabled if dpo is None else dpo
    summaries = {}
    for job in plan_jobs(mode, dpo):
        summaries[job.name] = fit = _fit(cfg, run_dir, job)
        _record(cfg, run_dir, mode, job, fit)
    return summaries


def _fit(cfg: JobpredConfig, run_dir, job: AdapterJob) -> dict:
    return trainer.fit_adapter(cfg, run_dir, job)  # via the module: patching trainer.fit_adapter takes effect


def _record(cfg: JobpredConfig, run_dir, mode: str, job: AdapterJob, summary: dict) -> None:
    """Add one adapter to the manifest's ``train`` stage, keeping the adapters recorded before it."""
    run = RunDir(run_dir)
    before = run.manifest()["stages"].get("train", {})
    outputs = {**before.get("outputs", {}), job.name: f"adapters/{job.name}",
               f"{job.name}_metrics": f"train/{job.name}/metrics.jsonl",
               f"{job.name}_examples": f"train/{job.name}/examples.parquet"}
    source = "oracle" if job.objective == "sft" else "dpo_pairs"
    info = {"path": f"adapters/{job.name}", "base_model": cfg.adapter_base,
            "base_model_path": resolve_model(cfg.adapter_base), "mode": mode, "role": job.role,
            "objective": job.objective, "init_from": job.init_from, "prompt_version": role_prompt_version(job.role, cfg.history_format),
            "history_format": cfg.history_format,
            "chat_template_kwargs": cfg.train.chat_template_kwargs,
            "data": {"table": str(run.output("reasons", source).relative_to(run.path)),
                     **{k: summary[k] for k in ("rows", "used", "skipped_too_long", "history_jobs_dropped")},
                     "examples": f"train/{job.name}/examples.parquet"},
            "metrics": summary["metrics"], "steps": summary["total_steps"],
            "worker_group_starts": summary["worker_group_starts"], "timings": summary["timings"]}
    adapters = {**before.get("adapters", {}), job.name: info}
    run.record_stage("train", outputs=outputs, config=cfg.train, counts={"adapters": len(adapters)},
                     model=cfg.adapter_base, extra={"adapters": adapters})
