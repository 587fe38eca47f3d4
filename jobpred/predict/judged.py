"""The generated reasons of the LLM predictors, judged on the three criteria at prediction time.

    judge_reasons(cfg, run, results, examples)   # RUN_DIR/predict/reason_judgements.parquet

The same judges as the oracle reasons (:func:`jobpred.reasons.judge.judge_pipeline`); the report's claim (c)
groups accuracy by these scores (:mod:`jobpred.eval.claims`).
"""

from __future__ import annotations

import polars as pl

from jobpred.reasons.judge import judge_pipeline
from jobpred.storage import write_parquet_atomic

JUDGEMENTS_FILE = "predict/reason_judgements.parquet"


def judge_reasons(cfg, run, results: pl.DataFrame, examples: pl.DataFrame) -> dict:
    """Judge every generated reason (first ``predict.judge_max_examples`` examples per predictor) with
    ``reasons.judge`` on the three criteria; write the judgements; return counts by status."""
    import ray

    rows = (results.filter(pl.col("reason").is_not_null() & pl.col("error").is_null()
                           & pl.col("history_json").is_not_null())
            .join(examples.select("example_id", "target_title"), on="example_id"))
    if cfg.predict.judge_max_examples is not None:
        rows = rows.group_by("predictor", maintain_order=True).head(cfg.predict.judge_max_examples)
    if rows.height == 0:
        return {"judged": 0}
    cands = rows.select("example_id", (pl.col("predictor") + "|" + pl.col("example_id")).alias("candidate_id"),
                        "history_json", "reason", "target_title", pl.lit(1).alias("n_judgeable"))
    out = []
    for batch in judge_pipeline(ray.data.from_arrow(cands.to_arrow()), cfg.reasons).iter_batches(
            batch_size=None, batch_format="pyarrow"):
        out.append(pl.from_arrow(batch))
    judged = pl.concat(out).with_columns(pl.col("candidate_id").str.split("|").list.first().alias("predictor"))
    judged = judged.select("predictor", "example_id", "criterion", "status", "score", "problem", "model",
                           "prompt_version", "raw_output")
    write_parquet_atomic(judged.to_arrow(), run.path / JUDGEMENTS_FILE)
    return {"judged": rows.height, **dict(judged.group_by("status").len().iter_rows())}
