"""The predictions table every predictor writes (baselines and LLMs alike), and the example features
evaluation reads: the contract between the predict and eval stages.

    RUN_DIR/predictions/<predictor>.parquet   (schema: PREDICTIONS_SCHEMA, extra columns allowed)

``predicted_code`` is null when the predictor produced nothing valid; ``ranked_codes`` holds up to
``top_k`` codes, best first (``predicted_code`` is its first element for the baselines). ``history_len``
and ``last_code`` are copied from the examples so a predictions file can be scored with its breakdowns
on its own (``jobpred score``); the report re-derives them from the examples by ``example_id`` when a
predictor (an LLM one, say) did not write them. LLM predictors add ``reason`` and ``raw_output``.
"""

from __future__ import annotations

import os

import polars as pl

from jobpred.rundir import RunDir
from jobpred.schema import PREDICTIONS_SCHEMA
from jobpred.storage import Location, location, write_parquet_atomic

PREDICTIONS_DIR = "predictions"


def predictions_dir(run_dir: str | os.PathLike, eval_run: str | os.PathLike | None = None) -> Location:
    """Where predictions go: ``RUN_DIR/predictions`` or, scored on another run, ``.../on-<its name>``."""
    base = location(run_dir) / PREDICTIONS_DIR
    return base / f"on-{location(eval_run).name}" if eval_run else base


def example_features(examples: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """example_id, target_code, history_len, last_code of an examples table (lazy)."""
    return examples.lazy().select(
        "example_id",
        "target_code",
        pl.col("history").list.len().cast(pl.Int32).alias("history_len"),
        pl.col("history").list.last().struct.field("onet_code").alias("last_code"),
    )


def split_examples(run: RunDir, split: str) -> pl.DataFrame:
    """One split of the run's prepared examples (``prepare`` must have run)."""
    return pl.read_parquet(str(run.output("prepare", split)))


def write_predictions(run: RunDir, name: str, examples: pl.DataFrame, ranked: pl.Series, top_k: int = 10,
                      out_dir: Location | None = None) -> Location:
    """Write ``RUN_DIR/predictions/<name>.parquet`` (or ``out_dir/<name>.parquet``) for ``examples``
    (row-aligned with ``ranked``).

    ``ranked`` is a list[str] series of codes, best first; nulls inside a list are dropped.
    """
    if len(ranked) != examples.height:
        raise ValueError(f"{name}: {len(ranked)} ranked lists for {examples.height} examples")
    ranked = ranked.cast(pl.List(pl.String)).list.drop_nulls().list.head(top_k)
    table = example_features(examples).collect().with_columns(
        ranked.alias("ranked_codes"),
    ).with_columns(pl.col("ranked_codes").list.first().alias("predicted_code"))
    table = table.select(PREDICTIONS_SCHEMA.names)
    out = (out_dir or run.path / PREDICTIONS_DIR) / f"{name}.parquet"
    write_parquet_atomic(table.to_arrow().cast(PREDICTIONS_SCHEMA), out)  # the cast enforces the contract
    return out


def find_predictions(run: RunDir) -> dict[str, Location]:
    """Predictor name -> its table, for every ``RUN_DIR/predictions/*.parquet`` (sorted by name)."""
    folder = run.path / PREDICTIONS_DIR
    return {p.stem: p for p in sorted(folder.glob("*.parquet"))} if folder.is_dir() else {}
