"""LLM predictors: batch prediction over a split (Ray Data + vLLM + LoRA), shared with the Serve application.

    from jobpred.predict import run
    run(cfg, "runs/demo")                               # RUN_DIR/predictions/<predictor>.parquet
    run(cfg, "runs/demo", eval_run="runs/other")        # RUN_DIR/predictions/on-other/<predictor>.parquet

Modules: ``steps`` (what each predictor prompts, with which adapter, and how its output is read),
``answers`` (generated text -> ranked valid O*NET codes), ``records`` (a raw record -> prompt history, for
serving), ``batch`` (the Ray Data pipeline), ``judged`` (judging the generated reasons for the report).
"""

from __future__ import annotations

import os
import time

import polars as pl

from jobpred.config import JobpredConfig
from jobpred.llm.engine import engine_starts
from jobpred.predict import batch
from jobpred.predict.judged import JUDGEMENTS_FILE, judge_reasons
from jobpred.predictions import predictions_dir, split_examples
from jobpred.ray_utils import init_ray
from jobpred.rundir import RunDir
from jobpred.storage import location

MERGED_DIR = "predict/merged"  # adapters merged into the base (predict.adapters: merged), rebuilt when changed
_EXAMPLE_COLUMNS = ["example_id", "education", "history", "target_code", "target_title"]


def run(cfg: JobpredConfig, run_dir: str | os.PathLike, eval_run: str | os.PathLike | None = None) -> dict:
    """Run ``cfg.predict.predictors`` over ``predict.split`` of ``eval_run`` (default: this run) with this
    run's adapters; write one predictions table per predictor and record the ``predict`` stage."""
    run_, source = RunDir(run_dir), RunDir(eval_run or run_dir)
    p = cfg.predict
    examples = split_examples(source, p.split)
    if p.max_examples is not None:
        examples = examples.head(p.max_examples)
    if examples.height == 0:
        raise ValueError(f"{source.path}: the {p.split} split is empty; nothing to predict")
    adapters = batch.trained_adapters(run_dir, cfg.history_format)
    predictors, skipped = batch.plan_predictors(cfg, adapters)
    for name, why in skipped.items():
        print(f"predict: skipping {name}: {why}", flush=True)
    out_dir = predictions_dir(run_dir, eval_run)
    batch.remove_other_tables(out_dir, predictors)
    stats: dict = {"examples": examples.height, "predictors": predictors, "skipped": skipped}
    started, engines = time.perf_counter(), engine_starts()
    if predictors:
        init_ray(cfg.ray)
        results = pl.from_arrow(batch.predict_table(examples.select(_EXAMPLE_COLUMNS).to_arrow(), cfg,
                                                    predictors, adapters, run_.path / MERGED_DIR))
        paths = batch.write_tables(out_dir, examples, results, predictors)
        stats.update(_counts(results), seconds=round(time.perf_counter() - started, 1),
                     generated_tokens=int(results["generated_tokens"].sum()))
        stats["predict_engine_starts"] = engine_starts() - engines
        if p.judge_reasons:
            stats["judge"] = judge_reasons(cfg, run_, results, examples)
        else:  # an earlier evaluation's judgements are of other predictions: the report must not use them
            (run_.path / JUDGEMENTS_FILE).unlink(missing_ok=True)
        stats["engine_starts"] = engine_starts() - engines
        stats["prompt_tokens"] = int(results["prompt_tokens"].sum())
    else:
        paths = {}
    stage = "predict" if eval_run is None else f"predict-on-{location(eval_run).name}"
    outputs = {name: str(path.relative_to(run_.path)) for name, path in paths.items()}
    run_.record_stage(stage, outputs=outputs, config=p, counts={k: v for k, v in stats.items() if k != "judge"},
                      model=cfg.model, extra={"adapters": {n: adapters[n] for n in sorted(adapters)},
                                              "eval_run": str(source.path), "judge": stats.get("judge")})
    return stats


def _counts(results) -> dict:
    """Per predictor: rows, rows with an error, answers per ranking method (exact / normalised / ...)."""
    out = {}
    for (name,), group in results.group_by("predictor", maintain_order=True):
        methods = dict(group.group_by("answer_method").len().iter_rows())
        out[name] = {"rows": group.height, "errors": int(group["error"].is_not_null().sum()),
                     "format_problems": int(group["format_problem"].is_not_null().sum()),
                     "methods": methods, "mean_generated_tokens": round(float(group["generated_tokens"].mean()), 1)}
    return {"by_predictor": out}
