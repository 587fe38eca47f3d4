"""Select: the oracle reason of each example, the outcome of every example, and DPO pairs (polars, no LLM).

Run as part of ``jobpred reasons`` (or ``select.run(cfg, run_dir)`` after :mod:`.judge`); it rereads all
committed candidates and judgements and rewrites its three outputs, so changing weights or minimums and
rerunning costs seconds, not LLM time.

Per candidate: the last attempt of each criterion is used, and only with status ``ok``; a candidate is
*judged* when all three are ok. ``combined`` is the weighted mean of the three scores (1-5). A candidate
*passes* when it is judged, well formed, every score is at least its minimum, ``combined >= min_combined``
with ``min_likelihood_gain``, its likelihood gain is at least that (:mod:`.gain`), and, with
``require_correct_answer``, its answer maps to the true occupation. The oracle is the passing candidate
ranked first by ``select_by``: the highest combined score, or the highest likelihood gain (ties: combined,
the grounding check, factuality, then candidate id).

Outcome of each planned example, exactly one of (``outcomes.parquet``):
  error     - the prompt did not fit the context; every candidate failed in the engine; or no candidate
              got three ok judgements (the judge failed), with the first error as the reason;
  no_oracle - no candidate in the required format, or none passes the bar (the reason names the best
              candidate and what it missed);
  oracle    - a row in ``oracle.parquet``.
DPO pair: best (passing, with ``dpo_chosen_must_pass``) vs worst judged candidate by ``select_by`` when
their gap in it (``margin``: combined-score points, or nats of gain) is above ``dpo_margin``.
"""

from __future__ import annotations

import json
import os

import polars as pl

from jobpred.config import JobpredConfig, ReasonsConfig
from jobpred.reasons.grounding import grounding_columns, judge_spread
from jobpred.reasons.store import PartStore, plan_ids, reasons_dir
from jobpred.rundir import RunDir
from jobpred.schema import (
    CANDIDATES_SCHEMA,
    DPO_PAIRS_SCHEMA,
    GAINS_SCHEMA,
    JUDGEMENTS_SCHEMA,
    ORACLE_SCHEMA,
    OUTCOMES_SCHEMA,
    REASON_ERRORS_SCHEMA,
)
from jobpred.storage import write_parquet_atomic

CRITERIA = ("factuality", "coherence", "utility")


def selection_rules(cfg: ReasonsConfig) -> str:
    """The rules recorded with every oracle and DPO row."""
    return json.dumps({"weights": cfg.weights.model_dump(), "min_scores": cfg.min_scores.model_dump(),
                       "min_combined": cfg.min_combined, "min_grounding": cfg.min_grounding,
                       "select_by": cfg.select_by, "min_likelihood_gain": cfg.min_likelihood_gain,
                       "reject_placeholders": cfg.reject_placeholders, "require_correct_answer": cfg.require_correct_answer,
                       "dpo_margin": cfg.dpo_margin, "dpo_chosen_must_pass": cfg.dpo_chosen_must_pass},
                      sort_keys=True)


def score_candidates(cands: pl.DataFrame, judgements: pl.DataFrame, cfg: ReasonsConfig,
                     gains: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per candidate with its three scores, combined score, likelihood gain (null without ``gains``),
    judged/passes flags and what it missed."""
    w = cfg.weights.model_dump()
    if sum(w.values()) <= 0:
        raise ValueError("reasons.weights must not all be 0")
    latest = judgements.sort("attempt").group_by("candidate_id", "criterion").last()
    ok = latest.filter(pl.col("status") == "ok")
    wide = (ok.pivot(on="criterion", index="candidate_id", values="score") if ok.height else
            pl.DataFrame(schema={"candidate_id": pl.String}))
    for c in CRITERIA:
        if c not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Int8).alias(c))
    judge_info = latest.group_by("candidate_id").agg(
        pl.col("model").first().alias("judge_model"),
        pl.concat_str(pl.col("criterion"), pl.lit("="), pl.col("prompt_version")).sort()
        .str.join(";").alias("judge_prompt_versions"),
        pl.concat_str(pl.col("criterion"), pl.lit(": "), pl.col("problem"))
        .filter(pl.col("status") != "ok").first().alias("judge_problem"),
    )
    mins = cfg.min_scores.model_dump()
    gain = (gains.filter(pl.col("status") == "ok").select("candidate_id", "likelihood_gain") if gains is not None
            else pl.DataFrame(schema={"candidate_id": pl.String, "likelihood_gain": pl.Float32}))
    scored = (grounding_columns(cands).join(wide.select("candidate_id", *CRITERIA), on="candidate_id", how="left")
              .join(gain, on="candidate_id", how="left")
              .join(judge_info, on="candidate_id", how="left")
              .with_columns(*(pl.col(c).cast(pl.Int8) for c in CRITERIA))
              .with_columns(
                  judged=pl.all_horizontal(pl.col(c).is_not_null() for c in CRITERIA),
                  combined=(sum(w[c] * pl.col(c) for c in CRITERIA) / sum(w.values())).cast(pl.Float32),
                  answer_correct=(pl.col("answer_code") == pl.col("target_code")).fill_null(False)))
    misses = [pl.when(pl.col(c) < mins[c]).then(pl.format(f"{c} {{}} < {mins[c]:g}", pl.col(c))) for c in CRITERIA]
    misses.append(pl.when(pl.col("combined") < cfg.min_combined)
                  .then(pl.format(f"combined {{}} < {cfg.min_combined:g}", pl.col("combined").round(2))))
    if cfg.reject_placeholders:
        misses.append(pl.when(pl.col("placeholder"))
                      .then(pl.lit("the reason is a format placeholder or names nothing of the history")))
    if cfg.min_grounding > 0:
        misses.append(pl.when(pl.col("grounding") < cfg.min_grounding)
                      .then(pl.format(f"grounding {{}} < {cfg.min_grounding:g}", pl.col("grounding").round(2))))
    if cfg.min_likelihood_gain is not None:
        misses.append(pl.when(pl.col("likelihood_gain").is_null())
                      .then(pl.lit("no likelihood gain (its scoring failed; see errors)"))
                      .when(pl.col("likelihood_gain") < cfg.min_likelihood_gain)
                      .then(pl.format(f"likelihood gain {{}} < {cfg.min_likelihood_gain:g}",
                                      pl.col("likelihood_gain").round(2))))
    if cfg.require_correct_answer:
        misses.append(pl.when(~pl.col("answer_correct"))
                      .then(pl.format("answer '{}' is not the true occupation", pl.col("answer"))))
    return scored.with_columns(misses=pl.concat_str(misses, separator="; ", ignore_nulls=True)).with_columns(
        passes=pl.col("judged") & pl.col("format_ok") & (pl.col("misses") == ""))


def select(plan: list[str], cands: pl.DataFrame, judgements: pl.DataFrame, example_errors: pl.DataFrame,
           cfg: ReasonsConfig, gains: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(outcomes, oracle, dpo_pairs) as DataFrames with the schemas of jobpred.schema."""
    return select_scored(plan, score_candidates(cands, judgements, cfg, gains), example_errors, cfg)


def select_scored(plan: list[str], scored: pl.DataFrame, example_errors: pl.DataFrame,
                  cfg: ReasonsConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """:func:`select` on candidates already scored (:func:`score_candidates`)."""
    # a judge without signal ties every candidate on combined: the grounding check decides then
    key = _ranking_key(cfg)
    best_first = [key.fill_null(float("-inf")), pl.col("combined"), pl.col("grounding").fill_null(0.5),
                  pl.col("factuality"), pl.col("candidate_id")]
    rank_desc = [True, True, True, True, False]
    judged = scored.filter(pl.col("judged"))
    best_pass = judged.filter(pl.col("passes")).sort(best_first, descending=rank_desc).group_by(
        "example_id", maintain_order=True).first()
    best_any = judged.sort(best_first, descending=rank_desc).group_by("example_id", maintain_order=True).first()
    worst = (judged.filter(key.is_not_null()).sort([key, pl.col("candidate_id")])
             .group_by("example_id", maintain_order=True).first())
    per_example = scored.group_by("example_id").agg(
        n_candidates=pl.len().cast(pl.Int32),
        n_errors=pl.col("error").is_not_null().sum(),
        n_format_ok=pl.col("format_ok").sum().cast(pl.Int32),
        n_judged=pl.col("judged").sum().cast(pl.Int32),
        first_error=pl.col("error").drop_nulls().first(),
        first_problem=pl.col("format_problem").drop_nulls().first(),
        judge_problem=pl.col("judge_problem").drop_nulls().first(),
    )
    ex_err = example_errors.group_by("example_id").agg(pl.col("error").first().alias("example_error"))
    out = (pl.DataFrame({"example_id": plan}, schema={"example_id": pl.String})
           .join(ex_err, on="example_id", how="left")
           .join(per_example, on="example_id", how="left")
           .join(best_pass.select("example_id", pl.col("candidate_id").alias("oracle_id")), on="example_id",
                 how="left")
           .join(best_any.select("example_id", pl.col("candidate_id").alias("best_candidate_id"),
                                 pl.col("combined").alias("best_combined"), pl.col("misses").alias("best_misses")),
                 on="example_id", how="left"))
    status = (pl.when(pl.col("example_error").is_not_null()).then(pl.lit("error"))
              .when(pl.col("n_candidates").is_null()).then(pl.lit("error"))
              .when(pl.col("n_errors") == pl.col("n_candidates")).then(pl.lit("error"))
              .when(pl.col("n_format_ok") == 0).then(pl.lit("no_oracle"))
              .when(pl.col("n_judged") == 0).then(pl.lit("error"))
              .when(pl.col("oracle_id").is_not_null()).then(pl.lit("oracle"))
              .otherwise(pl.lit("no_oracle")))
    reason = (pl.when(pl.col("example_error").is_not_null()).then(pl.col("example_error"))
              .when(pl.col("n_candidates").is_null())
              .then(pl.lit("no committed candidates: the candidates phase did not finish; run the stage again"))
              .when(pl.col("n_errors") == pl.col("n_candidates"))
              .then(pl.format("all {} candidates failed: {}", pl.col("n_candidates"), pl.col("first_error")))
              .when(pl.col("n_format_ok") == 0)
              .then(pl.format("no candidate in the <think>/<answer> format ({})", pl.col("first_problem")))
              .when(pl.col("n_judged") == 0)
              .then(pl.format("the judge failed on every candidate ({})",
                              pl.col("judge_problem").fill_null("not judged yet; run the stage again")))
              .when(pl.col("oracle_id").is_not_null()).then(pl.lit(None, pl.String))
              .otherwise(pl.format("no candidate passes the bar; best {} (combined {}): {}",
                                   pl.col("best_candidate_id"), pl.col("best_combined").round(2),
                                   pl.col("best_misses"))))
    outcomes = out.with_columns(status=status, reason=reason).with_columns(
        pl.when(pl.col("status") == "oracle").then(pl.col("oracle_id")).otherwise(pl.col("best_candidate_id"))
        .alias("best_candidate_id"),
        *(pl.col(c).fill_null(0).cast(pl.Int32) for c in ("n_candidates", "n_format_ok", "n_judged")))
    outcomes = outcomes.select(OUTCOMES_SCHEMA.names).cast({"best_combined": pl.Float32})
    rules = selection_rules(cfg)
    oracle = (best_pass.with_columns(
        teacher_model=pl.col("model"), teacher_prompt_version=pl.col("prompt_version"),
        teacher_sampling=pl.col("sampling"), selection=pl.lit(rules))
        .select(ORACLE_SCHEMA.names).sort("example_id"))
    chosen = best_pass if cfg.dpo_chosen_must_pass else best_any
    joint = pl.format("<think>\n{}\n</think>\n<answer>{}</answer>", pl.col("reason"), pl.col("answer"))
    dpo = (chosen.filter(key.is_not_null())
           .select("example_id", pl.col("candidate_id").alias("chosen_candidate_id"),
                   joint.alias("chosen_output"), pl.col("combined").alias("chosen_combined"),
                   key.alias("chosen_key"),
                         pl.col("model").alias("teacher_model"),
                         pl.col("prompt_version").alias("teacher_prompt_version"), "judge_model")
           .join(worst.select("example_id", pl.col("candidate_id").alias("rejected_candidate_id"),
                              joint.alias("rejected_output"), pl.col("combined").alias("rejected_combined"),
                              key.alias("rejected_key")),
                 on="example_id")
           .with_columns(margin=(pl.col("chosen_key") - pl.col("rejected_key")).cast(pl.Float32),
                         selection=pl.lit(rules))
           .filter((pl.col("margin") > cfg.dpo_margin)
                   & (pl.col("chosen_candidate_id") != pl.col("rejected_candidate_id")))
           .select(DPO_PAIRS_SCHEMA.names).sort("example_id"))
    return outcomes, oracle, dpo


def _ranking_key(cfg: ReasonsConfig) -> pl.Expr:
    """What orders candidates (oracle: highest first; DPO: best vs worst, margin in its unit)."""
    return pl.col("likelihood_gain") if cfg.select_by == "likelihood_gain" else pl.col("combined")


def run(cfg: JobpredConfig, run_dir: str | os.PathLike) -> dict:
    """Rewrite outcomes.parquet, oracle.parquet and dpo_pairs.parquet from the committed parts."""
    rcfg = cfg.reasons
    store = PartStore(reasons_dir(run_dir))
    plan = plan_ids(RunDir(run_dir).output("prepare", rcfg.split), rcfg.max_examples)
    cands = store.scan("candidates", CANDIDATES_SCHEMA).collect()
    judgements = store.scan("judgements", JUDGEMENTS_SCHEMA).collect()
    gains = store.scan("gains", GAINS_SCHEMA).collect() if rcfg.likelihood_gain else None
    example_errors = (store.scan("errors", REASON_ERRORS_SCHEMA)
                      .filter((pl.col("scope") == "example") & (pl.col("stage") == "candidates")).collect())
    scored = score_candidates(cands, judgements, rcfg, gains)
    outcomes, oracle, dpo = select_scored(plan, scored, example_errors, rcfg)
    for name, frame, schema in (("outcomes", outcomes, OUTCOMES_SCHEMA), ("oracle", oracle, ORACLE_SCHEMA),
                                ("dpo_pairs", dpo, DPO_PAIRS_SCHEMA)):
        write_parquet_atomic(frame.to_arrow().select(schema.names).cast(schema), store.root / f"{name}.parquet")
    by_status = dict(outcomes.group_by("status").len().iter_rows())
    spread = judge_spread(judgements)
    flat = [c for c, s in spread.items() if s["flat"]]
    if flat:
        print(f"reasons: the judge's {', '.join(flat)} scores barely vary (judge_spread in the manifest): they "
              "cannot rank candidates; the grounding check breaks their ties", flush=True)
    return {"planned": len(plan), "oracle": by_status.get("oracle", 0), "no_oracle": by_status.get("no_oracle", 0),
            "error": by_status.get("error", 0), "dpo_pairs": dpo.height, "candidates": cands.height,
            "judgements": judgements.height, "judge_spread": spread,
            "likelihood_gain": gain_summary(scored) if gains is not None else None,
            "oracle_grounding_mean": round(float(oracle["grounding"].mean()), 3) if oracle.height
            and oracle["grounding"].null_count() < oracle.height else None}


def gain_summary(scored: pl.DataFrame) -> dict:
    """How the likelihood gains spread and whether they track the answer being right (the manifest's view
    of whether the signal carries information, as judge_spread is the judge's)."""
    g = scored.filter(pl.col("likelihood_gain").is_not_null())
    if g.height == 0:
        return {"n": 0}

    def mean(frame: pl.DataFrame) -> float | None:
        return round(float(frame["likelihood_gain"].mean()), 3) if frame.height else None

    return {"n": g.height, "mean": mean(g), "sd": round(float(g["likelihood_gain"].std() or 0.0), 3),
            "positive_share": round(float((g["likelihood_gain"] > 0).mean()), 3),
            "mean_if_answer_correct": mean(g.filter(pl.col("answer_correct"))),
            "mean_if_answer_wrong": mean(g.filter(~pl.col("answer_correct")))}

