"""The paper's metrics (AccEM, AccRM), ranking metrics (Acc@k, MRR), bootstrap CIs and breakdowns.

    from jobpred.eval.metrics import score_frame, summarize
    frame = pl.DataFrame({"target": ["29-1141.00"], "prediction": ["Registered Nurses"]})
    summarize(score_frame(frame))   # {"AccEM": 100.0, "AccRM": 100.0, "total": 1, ...}

Definitions (the paper, Dong et al., PAKDD 2026; every metric is a percentage, MRR included):
- AccEM: share of examples whose predicted occupation *is* the ground truth;
- AccRM: mean of 1 for an exact match, 1/(i+1) when the prediction is the ground truth's O*NET Related
  Occupation with Index i (the ground truth itself is rank 1), else 0; a ground truth without a related
  list scores exact matches only;
- Acc@k / MRR: over the ``ranked`` list, when the predictor ranks (position of the ground truth, 1-based).

Predictions and targets are compared as O*NET-SOC 2019 codes after the strict mapping of
:meth:`Taxonomy.to_code` ("Registered Nurses" == "29-1141.00"). A null or blank prediction is ``missing``,
one that is not an O*NET-SOC 2019 code or official title is ``invalid``; both score 0 and are counted.
Rows whose *target* does not map are left out of every metric and counted as ``invalid_target``.

Everything is vectorised: codes are resolved with one join against a lookup table (plus
:meth:`Taxonomy.to_code` on the few distinct values the join cannot settle), AccRM is one join against the
related-occupations table, ranked lists are exploded once. Bootstrap CIs resample the histogram of each
per-row score (every score takes at most a few dozen values), which is exactly row resampling and costs
O(samples x distinct values), not O(samples x rows).
"""

from __future__ import annotations

import functools

import numpy as np
import polars as pl

from jobpred.taxonomy import Taxonomy, read_table

KS = (1, 5, 10)
"""The k of Acc@k reported for predictors that rank."""
HISTORY_BUCKETS = ((1, 1, "1"), (2, 2, "2"), (3, 4, "3-4"), (5, 9, "5-9"), (10, 10**9, "10+"))
"""(lowest, highest, label) of the history-length breakdown, in jobs before the target."""
_DP = 6  # decimals of every reported percentage


def _norm(expr: pl.Expr) -> pl.Expr:
    """Vectorised twin of Taxonomy's title key: trimmed, lower case, single spaces."""
    return expr.str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ")


@functools.cache
def _lookup() -> pl.DataFrame:
    """key -> code for every O*NET-SOC 2019 code and official title (keys normalised as in :func:`_norm`)."""
    occ = read_table("occupations").select("code", "title")
    by_title = occ.select(_norm(pl.col("title")).alias("key"), "code")
    by_code = occ.select(pl.col("code").alias("key"), "code")
    return pl.concat([by_title, by_code]).unique("key", keep="first")


@functools.cache
def _credit() -> pl.DataFrame:
    """(target_code, predicted_code) -> AccRM credit 1/(Index+1) for every O*NET related pair."""
    rel = read_table("related").group_by("code", "related_code").agg(pl.col("index").min())
    return rel.select(
        pl.col("code").alias("target_code"),
        pl.col("related_code").alias("predicted_code"),
        (1.0 / (pl.col("index").cast(pl.Float64) + 1.0)).alias("_credit"),
    )


@functools.cache
def _zones() -> pl.DataFrame:
    return read_table("occupations").select(pl.col("code").alias("target_code"), "job_zone")


def to_codes(values: pl.Series) -> pl.Series:
    """Strings (codes or official titles, any case/spacing) -> O*NET-SOC 2019 codes, null where none.

    Equal to ``[Taxonomy.to_code(v) for v in values]``, vectorised: the distinct values are resolved with
    one join (then :meth:`Taxonomy.to_code` on the distinct leftovers: odd Unicode spacing or case
    folding), and mapped back with a hash join -- 10M ranked entries hold only about a thousand values.
    """
    values = values.cast(pl.String)
    distinct = pl.DataFrame({"value": values.drop_nulls().unique()})
    resolved = distinct.with_columns(_norm(pl.col("value")).alias("key")).join(_lookup(), on="key", how="left")
    left = resolved.filter(pl.col("code").is_null() & (pl.col("value").str.strip_chars() != ""))["value"]
    if len(left):
        tax = Taxonomy.load()
        fallback = {v: tax.to_code(v) for v in left.to_list()}
        fallback = {v: c for v, c in fallback.items() if c is not None}
        if fallback:
            resolved = resolved.with_columns(
                pl.coalesce("code", pl.col("value").replace_strict(fallback, default=None, return_dtype=pl.String))
            )
    mapped = pl.DataFrame({"value": values}).join(
        resolved.select("value", "code"), on="value", how="left", maintain_order="left"
    )
    return mapped["code"].alias(values.name)


def score_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Per-row scores of a predictions frame.

    Input columns: ``target`` (code or title), ``prediction`` (code, title or null), optional ``ranked``
    (list of codes/titles, best first), optional ``history_len`` (jobs before the target) and
    ``last_code`` (code of the last history job) for the breakdowns.
    Output adds ``target_code``, ``predicted_code``, ``status`` (valid|invalid|missing|fallback), ``em`` (0/1),
    ``rm`` (AccRM credit), and with ``ranked``: ``rank`` (1-based, null when absent) and ``rr``.
    Rows whose target is not an O*NET code are kept with ``status = "invalid_target"`` and no scores.
    """
    missing = [c for c in ("target", "prediction") if c not in frame.columns]
    if missing:
        raise ValueError(f"predictions frame is missing column(s) {missing}; has {frame.columns}")
    df = frame.with_row_index("_row").with_columns(
        to_codes(frame["target"]).alias("target_code"),
        to_codes(frame["prediction"]).alias("predicted_code"),
    )
    blank = pl.col("prediction").is_null() | (pl.col("prediction").cast(pl.String).str.strip_chars() == "")
    df = df.with_columns(
        pl.when(pl.col("target_code").is_null()).then(pl.lit("invalid_target"))
        .when(pl.col("fallback") if "fallback" in frame.columns else pl.lit(False)).then(pl.lit("fallback"))
        .when(blank).then(pl.lit("missing"))
        .when(pl.col("predicted_code").is_null()).then(pl.lit("invalid"))
        .otherwise(pl.lit("valid")).alias("status"),
        (pl.col("predicted_code") == pl.col("target_code")).fill_null(False).cast(pl.Int8).alias("em"),
    )
    df = df.join(_credit(), on=["target_code", "predicted_code"], how="left", maintain_order="left")
    df = df.with_columns(
        pl.when(pl.col("em") == 1).then(1.0).otherwise(pl.col("_credit").fill_null(0.0)).alias("rm")
    ).drop("_credit")
    if "ranked" in df.columns:
        df = df.join(_ranks(df), on="_row", how="left", maintain_order="left").with_columns(
            (1.0 / pl.col("rank").cast(pl.Float64)).fill_null(0.0).alias("rr")
        )
    return df.drop("_row")


def _ranks(df: pl.DataFrame) -> pl.DataFrame:
    """1-based position of the target code in each row's ranked list: (_row, rank), rows with a hit only."""
    items = (
        df.select("_row", "target_code", pl.col("ranked").cast(pl.List(pl.String)))
        .filter(pl.col("ranked").is_not_null() & pl.col("target_code").is_not_null())
        .with_columns(pl.int_ranges(1, pl.col("ranked").list.len() + 1, dtype=pl.Int32).alias("rank"))
        .explode("ranked", "rank")
        .drop_nulls("ranked")
    )
    items = items.with_columns(to_codes(items["ranked"]).alias("code"))
    return (items.filter(pl.col("code") == pl.col("target_code"))
            .group_by("_row").agg(pl.col("rank").min()))


# ---- aggregates ------------------------------------------------------------------------------------


def bootstrap_ci(values: np.ndarray, samples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (same units), seeded and vectorised.

    Resampling n rows with replacement = drawing Multinomial(n, p) counts over the distinct values, so
    each of the ``samples`` replicate means costs O(distinct values), whatever n is.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0 or samples <= 0:
        return (float("nan"), float("nan"))
    distinct, counts = np.unique(values, return_counts=True)  # (U,), (U,)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=samples)  # (samples, U)
    means = draws @ distinct / n  # (samples,)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def metric_columns(scored: pl.DataFrame) -> dict[str, pl.Expr]:
    """Metric name -> per-row score expression (0..1); ranking metrics only when the frame ranks."""
    cols = {"AccEM": pl.col("em").cast(pl.Float64), "AccRM": pl.col("rm")}
    if "rank" in scored.columns:
        for k in KS:
            cols[f"Acc@{k}"] = (pl.col("rank") <= k).fill_null(False).cast(pl.Float64)
        cols["MRR"] = pl.col("rr")
    return cols


def _pct(x: float | None) -> float | None:
    return None if x is None or np.isnan(x) else round(100.0 * x, _DP)


def summarize(scored: pl.DataFrame, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Headline metrics of a :func:`score_frame` result: percentages, counts and 95% bootstrap CIs."""
    counts = scored.group_by("status").len()
    by_status = dict(zip(counts["status"].to_list(), counts["len"].to_list()))
    rows = scored.filter(pl.col("status") != "invalid_target")
    out: dict = {}
    per_row = rows.select(**metric_columns(scored)) if rows.height else None
    ci: dict[str, list[float | None]] = {}
    for i, name in enumerate(metric_columns(scored)):
        if per_row is None:
            out[name] = None
            continue
        values = per_row[name].to_numpy()
        out[name] = _pct(float(values.sum()) / len(values))
        if bootstrap > 0:
            lo, hi = bootstrap_ci(values, bootstrap, seed + i)
            ci[name] = [_pct(lo), _pct(hi)]
    out.update(
        total=rows.height,
        valid=int(by_status.get("valid", 0)),
        invalid=int(by_status.get("invalid", 0)),
        missing=int(by_status.get("missing", 0)),
        fallback=int(by_status.get("fallback", 0)),
        invalid_target=int(by_status.get("invalid_target", 0)),
        ci=ci,
        ci_level=0.95,
        bootstrap_samples=bootstrap,
    )
    return out


# ---- breakdowns ------------------------------------------------------------------------------------


def _groups(scored: pl.DataFrame) -> dict[str, pl.Expr]:
    """Breakdown name -> group label expression, for the columns the frame has."""
    groups = {"job_zone": pl.col("job_zone").cast(pl.String).fill_null("unknown")}
    if "history_len" in scored.columns:
        label = pl.lit("unknown")
        for lo, hi, name in reversed(HISTORY_BUCKETS):
            label = pl.when(pl.col("history_len").is_between(lo, hi)).then(pl.lit(name)).otherwise(label)
        groups["history_length"] = label
    if "last_code" in scored.columns:
        groups["major_group_change"] = (
            pl.when(pl.col("last_code").is_null()).then(pl.lit("unknown"))
            .when(pl.col("last_code").str.slice(0, 2) == pl.col("target_code").str.slice(0, 2))
            .then(pl.lit("same")).otherwise(pl.lit("changed"))
        )
    return groups


def breakdowns(scored: pl.DataFrame) -> dict[str, list[dict]]:
    """Metrics per target Job Zone, history-length bucket and SOC major-group change (same|changed).

    Each breakdown is a list of ``{"group", "n", <metric>: percent, ...}``; the ``n`` add up to ``total``.
    """
    rows = scored.filter(pl.col("status") != "invalid_target")
    rows = rows.join(_zones(), on="target_code", how="left")
    metrics = metric_columns(scored)
    order = {name: i for i, (_, _, name) in enumerate(HISTORY_BUCKETS)}
    result: dict[str, list[dict]] = {}
    for name, label in _groups(scored).items():
        table = rows.group_by(label.alias("group")).agg(
            pl.len().alias("n"), *[(100.0 * expr.mean()).round(_DP).alias(m) for m, expr in metrics.items()]
        )
        table = table.with_columns(
            pl.col("group").replace_strict(order, default=len(order), return_dtype=pl.Int32).alias("_o")
        ).sort("_o", "group").drop("_o")
        result[name] = table.to_dicts()
    return result


def major_group_errors(scored: pl.DataFrame, top: int = 10) -> list[dict]:
    """The most frequent (target SOC major group -> predicted major group) pairs among valid predictions
    in another major group: ``{"target_group", "predicted_group", "n", "share"}``, share of those errors."""
    wrong = scored.filter(
        (pl.col("status") == "valid")
        & (pl.col("predicted_code").str.slice(0, 2) != pl.col("target_code").str.slice(0, 2))
    )
    if wrong.height == 0:
        return []
    pairs = wrong.group_by(
        pl.col("target_code").str.slice(0, 2).alias("target_group"),
        pl.col("predicted_code").str.slice(0, 2).alias("predicted_group"),
    ).len("n")
    pairs = pairs.sort(["n", "target_group", "predicted_group"], descending=[True, False, False]).head(top)
    return pairs.with_columns((pl.col("n") / wrong.height).round(4).alias("share")).to_dicts()
