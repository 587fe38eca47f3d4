"""`jobpred score`: the metrics of one predictions file, as one JSON object.

Run as:
    jobpred score --input RUN_DIR/predictions/markov.parquet
    jobpred score --input paper_outputs.json --predictor qwen3-8b-joint

Two input formats, told apart by their content:
- the project's predictions table (Parquet, JSON Lines or a JSON list of rows): ``target_code`` (or
  ``target_title``), ``predicted_code`` and/or ``predicted_title`` (the code wins where both are set),
  optional ``ranked_codes`` (best first), optional ``example_id``, ``history_len``, ``last_code``;
- the paper's evaluation format (a JSON list, or JSON Lines, of objects)
  ``{"ground_truth_occupation": {"onet_title": T}, "predictions": {NAME: PREDICTED_TITLE, ...}}``,
  scored for ``--predictor NAME`` (optional when the file holds one predictor). A row without NAME is a
  missing prediction; NAME absent from every row is an error that lists the names the file has.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from jobpred.eval.metrics import breakdowns, major_group_errors, score_frame, summarize
from jobpred.predict.answers import FALLBACK_METHODS

PAPER_KEY = "ground_truth_occupation"
_TARGET_COLUMNS = ("target_code", "target_title", "target")
_PREDICTION_COLUMNS = ("predicted_code", "predicted_title", "prediction")
_RANKED_COLUMNS = ("ranked_codes", "ranked_titles", "ranked")
_EXTRA_COLUMNS = ("example_id", "history_len", "last_code")


def standardize_table(table: pl.DataFrame, strict: bool = True) -> pl.DataFrame:
    """A project predictions table -> the frame :func:`score_frame` reads (target, prediction, ...).

    An LLM predictor's table says how each first choice was found (``answer_method``). Scored ``strict``
    (the paper's rule, and the default), a first choice that came from a fall-back (``history``, ``prior``:
    the model gave nothing usable) is a miss, its whole ranked list with it; not strict, it is scored as
    served (what a user of the product gets). Either way such rows are counted as ``fallback``."""
    target = next((c for c in _TARGET_COLUMNS if c in table.columns), None)
    predicted = [c for c in _PREDICTION_COLUMNS if c in table.columns]
    if target is None or not predicted:
        raise ValueError(
            f"predictions table has columns {table.columns}; it needs one of {list(_TARGET_COLUMNS)} and "
            f"one of {list(_PREDICTION_COLUMNS)} (or is the paper's format, with '{PAPER_KEY}')"
        )
    fallback = (pl.col("answer_method").is_in(FALLBACK_METHODS).fill_null(False) if "answer_method" in table.columns
                else None)

    def served(expr: pl.Expr) -> pl.Expr:
        return pl.when(fallback).then(None).otherwise(expr) if strict and fallback is not None else expr

    cols = [
        pl.col(target).cast(pl.String).alias("target"),
        served(pl.coalesce([pl.col(c).cast(pl.String) for c in predicted])).alias("prediction"),
    ]
    ranked = next((c for c in _RANKED_COLUMNS if c in table.columns), None)
    if ranked is not None:
        cols.append(served(pl.col(ranked).cast(pl.List(pl.String))).alias("ranked"))
    if fallback is not None:
        cols.append(fallback.alias("fallback"))
    cols += [pl.col(c) for c in _EXTRA_COLUMNS if c in table.columns]
    return table.select(cols)


def _as_prediction(value: object) -> str | None:
    """A paper-format prediction value -> string; null/blank/empty containers are missing (None), any
    other non-string is kept as its JSON text, which maps to no code (an invalid prediction)."""
    if value is None or (isinstance(value, (list, dict, str)) and not value):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _as_target(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("onet_title") or value.get("onet_code")
    return value if isinstance(value, str) else None


def paper_predictors(rows: list) -> list[str]:
    """Predictor names present in any row of a paper-format file, sorted."""
    names: set[str] = set()
    for row in rows:
        preds = row.get("predictions") if isinstance(row, dict) else None
        if isinstance(preds, dict):
            names.update(preds)
    return sorted(names)


def standardize_paper(rows: list, predictor: str | None) -> tuple[pl.DataFrame, str | None]:
    """Paper-format rows -> (frame for :func:`score_frame`, the predictor scored)."""
    names = paper_predictors(rows)
    if rows and predictor is None:
        if len(names) != 1:
            raise ValueError(f"the file holds predictors {names}: choose one with --predictor NAME")
        predictor = names[0]
    if rows and predictor not in names:
        raise ValueError(f"predictor {predictor!r} is in no row; the file has {names}")
    targets, predictions = [], []
    for row in rows:
        row = row if isinstance(row, dict) else {}
        preds = row.get("predictions")
        targets.append(_as_target(row.get(PAPER_KEY)))
        predictions.append(_as_prediction(preds.get(predictor)) if isinstance(preds, dict) else None)
    frame = pl.DataFrame({"target": targets, "prediction": predictions},
                         schema={"target": pl.String, "prediction": pl.String})
    return frame, predictor


def read_predictions(path: str | Path, predictor: str | None = None) -> tuple[pl.DataFrame, dict]:
    """Read either format -> (standard frame, {"format", "predictor"})."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".parquet":
        return standardize_table(pl.read_parquet(path)), {"format": "table", "predictor": predictor or path.stem}
    text = path.read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            rows = json.loads(stripped)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON or JSON Lines ({exc})") from exc
    if not isinstance(rows, list):
        # A user's file, not a programming error: ValueError, which the CLI reports in one line.
        raise ValueError(f"{path}: expected a JSON list or JSON Lines of objects")
    if not rows or any(isinstance(r, dict) and PAPER_KEY in r for r in rows[:1000]):
        frame, name = standardize_paper(rows, predictor)
        return frame, {"format": "paper", "predictor": name}
    table = pl.from_dicts(rows, infer_schema_length=None, strict=False)
    return standardize_table(table), {"format": "table", "predictor": predictor or path.stem}


def score_predictions(frame: pl.DataFrame, bootstrap: int = 1000, seed: int = 0, top_errors: int = 10) -> dict:
    """Everything the report and `jobpred score` print for one standard predictions frame."""
    scored = score_frame(frame)
    result = summarize(scored, bootstrap=bootstrap, seed=seed)
    result["breakdowns"] = breakdowns(scored)
    result["major_group_errors"] = major_group_errors(scored, top=top_errors)
    return result


def served_figures(frame: pl.DataFrame, bootstrap: int = 1000, seed: int = 0) -> dict:
    """The headline metrics with fall-back first choices scored as served (frame: ``strict=False``)."""
    result = summarize(score_frame(frame), bootstrap=bootstrap, seed=seed)
    return {k: v for k, v in result.items() if k not in ("total", "valid", "invalid", "missing", "invalid_target")}


def score_file(path: str | Path, predictor: str | None = None, bootstrap: int = 1000, seed: int = 0) -> dict:
    """The JSON object `jobpred score` prints (strict; an LLM table's served figures under ``served``)."""
    frame, meta = read_predictions(path, predictor)
    result = {**score_predictions(frame, bootstrap=bootstrap, seed=seed), **meta, "input": str(path)}
    if "fallback" in frame.columns and meta["format"] == "table":
        table = pl.read_parquet(path) if Path(path).suffix == ".parquet" else None
        if table is not None:
            result["served"] = served_figures(standardize_table(table, strict=False), bootstrap, seed)
    return result
