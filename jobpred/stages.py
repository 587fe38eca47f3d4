"""The stages of the main job, each defined once: a :class:`Stage` with a name, the config it reads, the
outputs it writes under the run directory, its own options, and ``run(cfg, run_dir, **options)``.

    from jobpred.stages import STAGE
    STAGE["prepare"].run(cfg, "runs/demo", input="persons.jsonl")   # = jobpred prepare --input ... --run runs/demo
    STAGE["train"].run(cfg, "runs/demo")                            # = jobpred train --run runs/demo
    STAGE["train"].reads(cfg)                                       # what `jobpred run` hashes to skip it

Every entry point is a few lines around these objects: ``jobpred <stage>`` builds its arguments from
``Stage.options`` (:mod:`jobpred.cli`), ``jobpred run`` calls ``Stage.run`` with the defaults and skips by
``Stage.reads`` / ``Stage.outputs`` (:mod:`jobpred.pipeline`), and ``python -m pipelines.<stage>`` is the CLI
under the module name ``ray job submit`` runs. So a laptop run, a pipeline run and a cluster job cannot drift.

``run`` resolves the run directory first (``RunDir`` makes it absolute): what reaches Ray workers, Ray Train
workers and vLLM engine processes is never relative to *their* working directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobpred import eval as evaluation
from jobpred import predict, reasons, train
from jobpred.config import JobpredConfig
from jobpred.data import prepare as prepare_data
from jobpred.data import synth as synth_data
from jobpred.predict.steps import adapters_needed
from jobpred.rundir import RunDir
from jobpred.storage import location

INPUT_FORMATS = ("jsonl", "parquet", "jobhop", "karrierewege", "decorte")
SYNTH_INPUT = "input/persons.jsonl"  # where synth writes inside a run directory (and prepare reads it)


@dataclass(frozen=True)
class Option:
    """One command-line option of a stage: it becomes the keyword ``dest`` of ``Stage.run`` or, with
    ``override``, the dotted config override ``override=VALUE``."""

    flags: tuple[str, ...]
    help: str
    dest: str | None = None
    override: str | None = None
    kwargs: dict = field(default_factory=dict)  # more argparse arguments (type, choices, action, ...)


@dataclass
class Stage:
    name: str
    help: str
    fn: Callable[..., dict]  # fn(cfg, run_dir: Path, **options) -> summary
    reads: Callable[[JobpredConfig], dict]  # the config it reads, as JSON-able data
    outputs: tuple[str, ...]  # under RUN_DIR; redoing the stage deletes them
    options: tuple[Option, ...] = ()
    resumable: bool = False  # a rerun picks up its own committed work
    needs_run: bool = True  # synth can also write a file outside any run directory

    def run(self, cfg: JobpredConfig, run_dir: str | os.PathLike | None, **options) -> dict:
        return self.fn(cfg, RunDir(run_dir).path if run_dir is not None else None, **options)


def input_format_of(path: str | os.PathLike, given: str | None = None) -> str:
    """The input format: ``given``, or from the file suffix (``.parquet``; anything else is JSON Lines)."""
    if given is not None:
        if given not in INPUT_FORMATS:
            raise ValueError(f"input format {given!r}: expected one of {', '.join(INPUT_FORMATS)}")
        return given
    return "parquet" if str(path).endswith(".parquet") else "jsonl"


def train_jobs(cfg: JobpredConfig) -> list[tuple[str, bool]]:
    """The (mode, dpo) trainings of the train stage: ``train.mode`` (with DPO if ``train.dpo.enabled``), plus
    those that the adapters of ``predict.predictors`` need, so every configured predictor gets its row."""
    wanted = {cfg.train.mode: cfg.train.dpo.enabled}
    for adapter in {a for name in cfg.predict.predictors for a in adapters_needed(name)}:
        mode = "joint" if adapter.startswith("joint") else "two-model"  # joint[-dpo] | reasoner[-dpo], predictor
        wanted[mode] = wanted.get(mode, False) or adapter.endswith("-dpo")
    return [(mode, wanted[mode]) for mode in ("joint", "two-model") if mode in wanted]


# ---- what each stage does ---------------------------------------------------------------------------------


def _synth(cfg: JobpredConfig, run_dir: Path | None, out: str | None = None, quiet: bool = False) -> dict:
    """Synthetic persons (``cfg.synth``) into ``out`` (``.jsonl`` file, or a directory of Parquet parts),
    by default ``RUN_DIR/input/persons.jsonl``, which then gets a manifest entry (so a run can skip it)."""
    if out is None and run_dir is None:
        raise ValueError("synth needs --out PATH or --run RUN_DIR")
    path = location(out) if out is not None else run_dir / SYNTH_INPUT
    summary = synth_data.write_synthetic(cfg.synth, path, progress=not quiet)
    if run_dir is not None and path == run_dir / SYNTH_INPUT:
        RunDir(run_dir).record_stage("synth", outputs={"persons": SYNTH_INPUT}, config=cfg.synth,
                                     counts={k: v for k, v in summary.items() if isinstance(v, int)})
    return summary


def _prepare(cfg: JobpredConfig, run_dir: Path, input: str | None = None, input_format: str | None = None) -> dict:
    """Validate, normalise titles, build and split examples of ``input`` (default: what synth wrote)."""
    path = location(input) if input is not None else run_dir / SYNTH_INPUT
    return prepare_data.prepare(path, run_dir, cfg.prepare, cfg.ray, input_format=input_format_of(path, input_format))


def _reasons(cfg: JobpredConfig, run_dir: Path) -> dict:
    return reasons.run(cfg, run_dir)


def _train(cfg: JobpredConfig, run_dir: Path, mode: str | None = None, dpo: bool | None = None) -> dict:
    """With neither ``mode`` nor ``dpo``: every training of :func:`train_jobs`; otherwise that mode (default
    ``train.mode``), with DPO when ``dpo`` (default ``train.dpo.enabled``)."""
    if mode is None and dpo is None:
        jobs = train_jobs(cfg)
    else:
        jobs = [(mode or cfg.train.mode, cfg.train.dpo.enabled if dpo is None else dpo)]
    summaries: dict = {}
    for job_mode, job_dpo in jobs:
        summaries.update(train.run(cfg, run_dir, mode=job_mode, dpo=job_dpo))
    return summaries


def _evaluate(cfg: JobpredConfig, run_dir: Path, eval_run: str | None = None, baselines_only: bool = False) -> dict:
    other = RunDir(eval_run).path if eval_run else None
    result = {"baselines": evaluation.run_baselines(cfg, run_dir, other), "predict": None}
    if not baselines_only:
        result["predict"] = predict.run(cfg, run_dir, other)
    return result


def _report(cfg: JobpredConfig, run_dir: Path, eval_run: str | None = None) -> dict:
    return evaluation.run_report(run_dir, bootstrap=cfg.baselines.bootstrap_samples, seed=cfg.baselines.bootstrap_seed,
                           eval_run=RunDir(eval_run).path if eval_run else None)


def _bootstrap(cfg: JobpredConfig) -> dict:
    return {"bootstrap_samples": cfg.baselines.bootstrap_samples, "bootstrap_seed": cfg.baselines.bootstrap_seed}


_EVAL_RUN = Option(("--eval-run",), "score this run's models on the test split of another run directory "
                   "(predictions and report under RUN_DIR/{predictions,report}/on-<its name>/)", dest="eval_run")

STAGES: tuple[Stage, ...] = (
    Stage("synth", "write synthetic career records grounded in O*NET", _synth,
          reads=lambda cfg: {"synth": cfg.synth.model_dump(mode="json")},
          outputs=(SYNTH_INPUT, SYNTH_INPUT + ".traits.parquet"), needs_run=False,
          options=(Option(("--persons",), "number of persons (synth.persons)", override="synth.persons",
                          kwargs={"type": int}),
                   Option(("--seed",), "random seed (synth.seed)", override="synth.seed", kwargs={"type": int}),
                   Option(("--out",), "PATH.jsonl, or a directory for Parquet parts (default: in --run)",
                          dest="out"),
                   Option(("--quiet",), "no progress bar", dest="quiet", kwargs={"action": "store_true"}))),
    Stage("prepare", "validate records, normalise titles, build and split examples", _prepare,
          reads=lambda cfg: {"prepare": cfg.prepare.model_dump(mode="json")},
          outputs=("examples", "rejected.jsonl", "summary.json"),
          options=(Option(("--input",), "a .jsonl/.parquet file or a directory of them (default: synth's output "
                          "in the run directory)", dest="input"),
                   Option(("--format",), "input format (default: from the file suffix)", dest="input_format",
                          kwargs={"choices": INPUT_FORMATS}),
                   Option(("--engine",), "prepare.engine", override="prepare.engine",
                          kwargs={"choices": ("ray", "local")}))),
    Stage("reasons", "oracle reasons: teacher candidates, LLM judge, selection, DPO pairs (resumable)", _reasons,
          reads=lambda cfg: {"reasons": cfg.reasons.model_dump(mode="json"), "history_format": cfg.history_format},
          outputs=("reasons",),
          resumable=True),
    Stage("train", "LoRA fine-tuning on oracle reasons with Ray Train (SFT, then DPO; resumable)", _train,
          reads=lambda cfg: {"model": cfg.model, "train": cfg.train.model_dump(mode="json"), "jobs": train_jobs(cfg),
                             "history_format": cfg.history_format},
          outputs=("adapters", "train"), resumable=True,
          options=(Option(("--mode",), "only this mode (default: every adapter the configured predictors need, "
                          "as `jobpred run`)", dest="mode", kwargs={"choices": ("joint", "two-model")}),
                   Option(("--dpo",), "DPO after SFT (train.dpo.enabled)", dest="dpo",
                          kwargs={"action": "store_true", "default": None}))),
    Stage("evaluate", "baselines and LLM predictors on the test split (RUN_DIR/predictions/)", _evaluate,
          reads=lambda cfg: {"model": cfg.model, "predict": cfg.predict.model_dump(mode="json"),
                             "history_format": cfg.history_format,
                             "judge": cfg.reasons.judge.model_dump(mode="json"),
                             "baselines": cfg.baselines.model_dump(
                                 mode="json", exclude={"bootstrap_samples", "bootstrap_seed"})},
          outputs=("predictions", "predict", "ray_train"),
          options=(Option(("--baselines-only",), "only the baselines (popular, stay, markov, gru), not the LLM "
                          "predictors", dest="baselines_only", kwargs={"action": "store_true"}), _EVAL_RUN)),
    Stage("report", "scores, paired CIs, claims and plots of the run's predictions (RUN_DIR/report/)", _report,
          reads=_bootstrap, outputs=("report",), options=(_EVAL_RUN,)),
)
STAGE: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_NAMES = tuple(STAGE)
