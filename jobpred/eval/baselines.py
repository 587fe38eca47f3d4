"""Baseline predictors, trained on a run's train split, each writing ``RUN_DIR/predictions/<name>.parquet``.

Run as:
    jobpred evaluate --config configs/local.yaml --run runs/demo --baselines-only

- ``popular``: the train split's most frequent next occupations, the same list for everyone;
- ``stay``: the person's most recent known occupation again (then earlier ones, most recent first);
- ``markov``: first-order Markov over O*NET codes, smoothed with O*NET (:mod:`jobpred.eval.markov`);
- ``gru``: a supervised GRU classifier over the 923 occupations (:mod:`jobpred.eval.seqmodel`, torch).

The zero-shot LLM baselines (the default model prompted with the history, with and without a reason step,
its answer mapped to O*NET by the normaliser) are LLM predictors: :mod:`jobpred.predict` runs them with the
fine-tuned ones through one vLLM engine and writes the same table, so each is one more row of the report.
"""

from __future__ import annotations

import time

import polars as pl

from jobpred.config import BaselinesConfig, RayConfig
from jobpred.eval.markov import MarkovModel, popular_targets
from jobpred.predictions import PREDICTIONS_DIR, predictions_dir, split_examples, write_predictions
from jobpred.ray_utils import init_ray
from jobpred.rundir import RunDir
from jobpred.schema import EXAMPLES_SCHEMA, require_columns


def predict_popular(train: pl.DataFrame, examples: pl.DataFrame, cfg: BaselinesConfig) -> pl.Series:
    top = popular_targets(train.lazy(), cfg.top_k)
    return pl.Series("ranked", [top] * examples.height, dtype=pl.List(pl.String))


def predict_stay(train: pl.DataFrame, examples: pl.DataFrame, cfg: BaselinesConfig) -> pl.Series:
    del train  # nothing to learn
    return examples.select(
        pl.col("history").list.eval(pl.element().struct.field("onet_code"))
        .list.reverse().list.drop_nulls().list.unique(maintain_order=True).list.head(cfg.top_k)
        .alias("ranked")
    )["ranked"]


def predict_markov(train: pl.DataFrame, examples: pl.DataFrame, cfg: BaselinesConfig) -> pl.Series:
    model = MarkovModel.fit(train.lazy(), alpha=cfg.markov_alpha, changers_weight=cfg.markov_changers_weight,
                            top_k=cfg.top_k)
    last = examples.select(pl.col("history").list.last().struct.field("onet_code"))["onet_code"]
    return model.rank(last, cfg.top_k)


def predict_gru(train: pl.DataFrame, examples: pl.DataFrame, cfg: BaselinesConfig,
                run: RunDir | None = None, ray_cfg: RayConfig | None = None) -> pl.Series:
    from jobpred.eval import seqmodel  # torch

    workers = None
    if cfg.use_ray_train:
        init_ray(ray_cfg)
        workers = cfg.ray_train_workers
    storage = run.path / "ray_train" if run is not None else None
    model = seqmodel.fit(train, cfg.gru, ray_workers=workers, storage=storage)
    return seqmodel.rank(model, examples, cfg.gru, cfg.top_k)


_PREDICTORS = {"popular": predict_popular, "stay": predict_stay, "markov": predict_markov}


def run(cfg: BaselinesConfig, run_dir, ray_cfg: RayConfig | None = None, eval_run=None) -> dict:
    """Fit every configured baseline on train, predict ``cfg.split``, write the tables, record the stage.

    With ``eval_run`` the baselines (still fitted on this run's train split) predict that run's
    ``cfg.split`` instead, into ``RUN_DIR/predictions/on-<its name>/``."""

    run_ = RunDir(run_dir)
    out_dir = predictions_dir(run_dir, eval_run)
    train = split_examples(run_, "train")
    examples = split_examples(RunDir(eval_run) if eval_run else run_, cfg.split)
    require_columns(train.columns, EXAMPLES_SCHEMA, f"{run_.path} train split")
    require_columns(examples.columns, EXAMPLES_SCHEMA, f"{run_.path} {cfg.split} split")
    if train.height == 0:
        raise ValueError(f"{run_.path}: the train split is empty; nothing to fit baselines on")
    summary: dict[str, dict] = {}
    for name in cfg.predictors:
        started = time.perf_counter()
        if name == "gru":
            ranked = predict_gru(train, examples, cfg, run_, ray_cfg)
        else:
            ranked = _PREDICTORS[name](train, examples, cfg)
        path = write_predictions(run_, name, examples, ranked, cfg.top_k, out_dir)
        summary[name] = {
            "path": str(path.relative_to(run_.path)),
            "seconds": round(time.perf_counter() - started, 3),
            "with_prediction": int(ranked.list.len().gt(0).sum()),
        }
    run_.record_stage(
        "baselines" if eval_run is None else f"baselines-{out_dir.name}",
        outputs={name: info["path"] for name, info in summary.items()} or {"predictions": PREDICTIONS_DIR},
        config=cfg,
        counts={"train": train.height, cfg.split: examples.height,
                **{f"{n}_seconds": s["seconds"] for n, s in summary.items()}},
    )
    return summary
