"""Evaluation: the paper's metrics, baseline predictors and the report (layer 4 of the pipeline; see README.md).

    from jobpred.eval import run_baselines, run_report
    run_baselines(cfg, "runs/demo")   # RUN_DIR/predictions/{popular,stay,markov,gru}.parquet
    run_report("runs/demo")           # RUN_DIR/report/{report.md,metrics.json,*.png}

The evaluate stage (baselines, then the LLM predictors of :mod:`jobpred.predict`) is ``jobpred.stages.evaluate``.

Modules: ``metrics`` (AccEM, AccRM, Acc@k, MRR, CIs, breakdowns), ``score`` (`jobpred score`, both file
formats), ``predictions`` (the predictions table), ``baselines`` / ``markov`` / ``seqmodel`` (predictors),
``report``. Importing this package is light: polars and numpy only; torch and matplotlib load on use.
"""

from __future__ import annotations

from jobpred.config import JobpredConfig
from jobpred.eval import baselines
from jobpred.eval.report import build_report


def run_baselines(cfg: JobpredConfig, run_dir, eval_run=None) -> dict:
    """Fit and run ``cfg.baselines.predictors`` on the run's splits (predicting ``eval_run``'s split when
    given); returns per-predictor timings/paths."""
    return baselines.run(cfg.baselines, run_dir, cfg.ray, eval_run=eval_run)


def run_report(run_dir, bootstrap: int = 1000, seed: int = 0, eval_run=None) -> dict:
    """Score every table in ``RUN_DIR/predictions`` and write ``RUN_DIR/report/``; returns the paths
    (``eval_run``: the tables and report of predictions made on another run's test split)."""
    return build_report(run_dir, bootstrap=bootstrap, seed=seed, eval_run=eval_run)


__all__ = ["run_baselines", "run_report"]
