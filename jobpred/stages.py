"""The stages of the main job, each once: the function that ``jobpred <stage>``, the stage of ``jobpred run``
and ``python -m pipelines.<stage>`` all call, with the same inputs.

    from jobpred import stages
    stages.prepare(cfg, "persons.jsonl", "runs/demo")       # = jobpred prepare --input persons.jsonl --run runs/demo
    stages.train(cfg, "runs/demo")                          # = jobpred train --run runs/demo (the adapters the
                                                            #   configured predictors need, as `jobpred run` trains)

The CLI (``jobpred/cli.py``) only parses arguments; ``jobpred/pipeline.py`` only decides what to skip and
keeps its records; ``pipelines/*.py`` are the CLI under the module names that ``ray job submit`` runs. So a
laptop run, a pipeline run and a cluster job cannot drift apart.

Every function makes its paths absolute before anything else (``RunDir`` does it for run directories):
what reaches Ray workers, Ray Train workers and vLLM engine processes is never relative to *their*
working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from jobpred.config import JobpredConfig
from jobpred.rundir import RunDir, absolute

INPUT_FORMATS = ("jsonl", "parquet", "jobhop", "karrierewege", "decorte")


def input_format_of(path: str | os.PathLike, given: str | None = None) -> str:
    """The input format: ``given``, or from the file suffix (``.parquet``; anything else is JSON Lines)."""
    if given is not None:
        if given not in INPUT_FORMATS:
            raise ValueError(f"input format {given!r}: expected one of {', '.join(INPUT_FORMATS)}")
        return given
    return "parquet" if Path(path).suffix == ".parquet" else "jsonl"


def train_jobs(cfg: JobpredConfig) -> list[tuple[str, bool]]:
    """The (mode, dpo) trainings of the train stage: ``train.mode`` (with DPO if ``train.dpo.enabled``), plus
    those that the adapters of ``predict.predictors`` need, so every configured predictor gets its row."""
    from jobpred.predict.steps import adapters_needed

    wanted = {cfg.train.mode: cfg.train.dpo.enabled}
    for adapter in {a for name in cfg.predict.predictors for a in adapters_needed(name)}:
        mode = "joint" if adapter.startswith("joint") else "two-model"  # joint[-dpo] | reasoner[-dpo], predictor
        wanted[mode] = wanted.get(mode, False) or adapter.endswith("-dpo")
    return [(mode, wanted[mode]) for mode in ("joint", "two-model") if mode in wanted]


def synth(cfg: JobpredConfig, out: str | os.PathLike, progress: bool = True) -> dict:
    """Synthetic persons (``cfg.synth``) into ``out`` (``.jsonl`` file, or a directory of Parquet parts)."""
    from jobpred.data.synth import write_synthetic

    return write_synthetic(cfg.synth, absolute(out), progress=progress)


def prepare(cfg: JobpredConfig, input_path: str | os.PathLike, run_dir: str | os.PathLike,
            input_format: str | None = None) -> dict:
    """Validate, normalise titles, build and split examples of ``input_path`` into the run directory."""
    from jobpred.data.prepare import prepare as prepare_records

    fmt = input_format_of(input_path, input_format)
    return prepare_records(absolute(input_path), RunDir(run_dir).path, cfg.prepare, cfg.ray, input_format=fmt)


def reasons(cfg: JobpredConfig, run_dir: str | os.PathLike) -> dict:
    """Oracle reasons: teacher candidates, judge, selection, DPO pairs (resumes committed work)."""
    from jobpred.reasons import run

    return run(cfg, RunDir(run_dir).path)


def train(cfg: JobpredConfig, run_dir: str | os.PathLike, mode: str | None = None, dpo: bool | None = None,
          ) -> dict:
    """LoRA adapters on Ray Train; adapter name -> summary. With neither ``mode`` nor ``dpo``: every training
    of :func:`train_jobs` (what ``jobpred run`` trains); otherwise that mode (default ``train.mode``), with DPO
    when ``dpo`` (default ``train.dpo.enabled``). Adapters already trained are skipped, killed ones resume."""
    from jobpred.train import run

    path = RunDir(run_dir).path
    if mode is None and dpo is None:
        jobs = train_jobs(cfg)
    else:
        jobs = [(mode or cfg.train.mode, cfg.train.dpo.enabled if dpo is None else dpo)]
    summaries: dict = {}
    for job_mode, job_dpo in jobs:
        summaries.update(run(cfg, path, mode=job_mode, dpo=job_dpo))
    return summaries


def evaluate(cfg: JobpredConfig, run_dir: str | os.PathLike, eval_run: str | os.PathLike | None = None,
             baselines_only: bool = False) -> dict:
    """Predictions tables: the baselines, then (unless ``baselines_only``) the LLM predictors of
    ``cfg.predict`` -- on this run's split, or on ``eval_run``'s."""
    from jobpred.eval import run_baselines

    path, other = RunDir(run_dir).path, RunDir(eval_run).path if eval_run else None
    result = {"baselines": run_baselines(cfg, path, other), "predict": None}
    if not baselines_only:
        from jobpred import predict

        result["predict"] = predict.run(cfg, path, other)
    return result


def report(cfg: JobpredConfig, run_dir: str | os.PathLike, eval_run: str | os.PathLike | None = None) -> dict:
    """Scores, paired CIs, claims and plots of every predictions table: ``RUN_DIR/report/``."""
    from jobpred.eval import run_report

    return run_report(RunDir(run_dir).path, bootstrap=cfg.baselines.bootstrap_samples,
                      seed=cfg.baselines.bootstrap_seed, eval_run=RunDir(eval_run).path if eval_run else None)
