"""Likelihood gain: how much a candidate's reason raises the likelihood of the true next occupation.

Run as part of ``jobpred reasons`` when ``reasons.likelihood_gain`` is on (after :mod:`.judge`).

For each judged candidate (``format_ok``) the judge's model scores the true next occupation's title as the
answer of the predictor prompt (:func:`jobpred.llm.prompts.predictor_messages`: history + reason -> answer
block), once with the candidate's reason and once per example with an empty reason::

    likelihood_gain = log P(title | history, reason) - log P(title | history, no reason)     (nats)

One prefill per prompt and no generation (vLLM prompt logprobs, as the 'ranked' answer mode scores titles).
Why: at 135M the LLM judge's scores do not vary (docs/reasons.md), while a reason that says something
true about where this career goes makes its title more likely to a reader of the reason; a placeholder or
an off-topic reason does not. It is the paper's *utility* criterion measured instead of asked for, and
needs no larger judge. :mod:`.select` can rank candidates (and DPO pairs) by it
(``reasons.select_by``).

Rows (``reasons/gains/``, GAINS_SCHEMA): one per candidate, with both log-likelihoods. Candidates of one
example whose reasons are identical are scored once (identical prompts would be served from the engine's
prefix cache, which computes no logprobs). Committed per example with the baseline, like the judge's rows:
a restart neither repeats nor loses an example.
"""

from __future__ import annotations

import json
import os

import polars as pl
import pyarrow as pa

from jobpred.config import JobpredConfig, ReasonsConfig
from jobpred.llm import engine
from jobpred.llm.budget import TokenCounter
from jobpred.llm.prompts import PROMPTS, history_format, predictor_messages, title_scoring
from jobpred.ray_utils import init_ray
from jobpred.reasons.generate import MESSAGES_TYPE
from jobpred.reasons.store import PartStore, Progress, iter_rows, now_iso, reasons_dir, run_phase
from jobpred.schema import CANDIDATES_SCHEMA, GAINS_SCHEMA, REASON_ERRORS_SCHEMA

PHASE = "gain"
_LIGHT_CPU = 0.1
_PLACEHOLDER = [{"role": "user", "content": "-"}]

# candidate_ids as a JSON list through the engine: ray.data.llm rebuilds rows from dicts, and an empty list
# (the baseline's) has no Arrow type of its own
REQUEST_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("candidate_ids", pa.string()), ("prompt_version", pa.string()),
    ("messages", MESSAGES_TYPE), ("score_from", pa.int32()), ("budget_error", pa.string()),
    ("group_key", pa.string()), ("group_size", pa.int32()),
])
SCORED_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("candidate_ids", pa.list_(pa.string())), ("prompt_version", pa.string()),
    ("status", pa.string()), ("logp", pa.float32()), ("title_tokens", pa.int32()), ("problem", pa.string()),
    ("prompt_tokens", pa.int32()), ("llm_seconds", pa.float32()), ("group_key", pa.string()),
    ("group_size", pa.int32()),
])


def plan(cands: pl.DataFrame, done: set[str]) -> pl.DataFrame:
    """One row per prompt to score: each distinct reason of an example not done yet (``candidate_ids``: the
    candidates with that reason), plus the example's no-reason baseline (``candidate_ids`` empty);
    ``group_size``: the example's prompts."""
    todo = cands.filter(pl.col("format_ok") & ~pl.col("example_id").is_in(list(done)))
    reasons = (todo.sort("candidate_id")
               .group_by("example_id", "reason", maintain_order=True)
               .agg(pl.col("candidate_id").alias("candidate_ids"), pl.col("history_json").first(),
                    pl.col("target_title").first()))
    baselines = (reasons.group_by("example_id", maintain_order=True)
                 .agg(pl.col("history_json").first(), pl.col("target_title").first())
                 .with_columns(reason=pl.lit(None, pl.String), candidate_ids=pl.lit([], pl.List(pl.String))))
    rows = pl.concat([baselines.select(reasons.columns), reasons])
    sizes = rows.group_by("example_id").len("group_size")
    return rows.join(sizes, on="example_id").with_columns(pl.col("group_size").cast(pl.Int32)).sort(
        "example_id", pl.col("candidate_ids").list.len())


class BuildGainRequests:
    """Ray Data actor: planned prompts -> scoring requests (loads the judge's tokenizer once)."""

    def __init__(self, cfg: ReasonsConfig) -> None:
        self.count = TokenCounter(cfg.judge)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for r in batch.to_pylist():
            # the base model's two-model predictor prompt, answered with the true title
            messages, prefix = title_scoring(predictor_messages(r["history_json"], r["reason"] or ""),
                                             r["target_title"])
            row = {"example_id": r["example_id"], "candidate_ids": json.dumps(r["candidate_ids"]),
                   "prompt_version": PROMPTS["predictor"].tagged(history_format(r["history_json"] or "")),
                   "messages": _PLACEHOLDER, "score_from": 0, "budget_error": None,
                   "group_key": r["example_id"], "group_size": r["group_size"]}
            used = self.count(messages)
            if used >= self.count.context:
                row["budget_error"] = f"the scoring prompt needs {used} tokens; the context is {self.count.context}"
            else:  # the prefix is counted only for prompts that are sent
                row.update(messages=messages, score_from=self.count(prefix))
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=REQUEST_SCHEMA)


def parse_scores(batch: pa.Table) -> pa.Table:
    """Engine rows -> log P(title + closing tag | prompt), or the reason there is none."""
    out = []
    for r in batch.to_pylist():
        row = {k: r[k] for k in ("example_id", "prompt_version", "prompt_tokens", "llm_seconds", "group_key",
                                 "group_size")}
        row["candidate_ids"] = json.loads(r["candidate_ids"])
        logprobs = list(r["scored_logprobs"] or [])
        logp = engine.title_logprob(logprobs)
        if r["budget_error"]:
            row.update(status="error", problem=r["budget_error"], logp=None, title_tokens=0, prompt_tokens=None)
        elif r["llm_error"]:
            row.update(status="error", problem=r["llm_error"], logp=None, title_tokens=len(logprobs))
        elif logp is None:
            missing = sum(lp is None for lp in logprobs)
            row.update(status="error", logp=None, title_tokens=len(logprobs),
                       problem=f"the engine returned no logprob for {missing} of {len(logprobs)} title positions")
        else:
            row.update(status="ok", logp=logp, title_tokens=len(logprobs), problem=None)
        out.append(row)
    return pa.Table.from_pylist(out, schema=SCORED_SCHEMA)


def to_tables(groups: list[list[dict]], model: str) -> tuple[dict[str, pa.Table], list[str]]:
    """Complete examples (baseline + each distinct reason) -> gains rows per candidate, errors rows."""
    at = now_iso()
    gains, errors = [], []
    for rows in groups:
        base = next(r for r in rows if not r["candidate_ids"])
        for r in rows:
            if not r["candidate_ids"]:
                continue
            problem = r["problem"] if r["status"] != "ok" else (
                f"baseline: {base['problem']}" if base["status"] != "ok" else None)
            ok = problem is None
            for cid in r["candidate_ids"]:
                gains.append({"example_id": r["example_id"], "candidate_id": cid, "status": "ok" if ok else "error",
                              "logp_reason": r["logp"], "logp_no_reason": base["logp"],
                              "likelihood_gain": r["logp"] - base["logp"] if ok else None,
                              "title_tokens": r["title_tokens"], "problem": problem, "model": model,
                              "prompt_version": r["prompt_version"], "prompt_tokens": r["prompt_tokens"],
                              "llm_seconds": r["llm_seconds"], "committed_at": at})
                if not ok:
                    errors.append({"example_id": r["example_id"], "stage": PHASE, "scope": "gain", "candidate_id": cid,
                                   "criterion": None, "error": problem, "model": model,
                                   "prompt_version": r["prompt_version"], "committed_at": at})
    return ({"gains": pa.Table.from_pylist(gains, schema=GAINS_SCHEMA),
             "errors": pa.Table.from_pylist(errors, schema=REASON_ERRORS_SCHEMA)},
            [g[0]["group_key"] for g in groups])


def run(cfg: JobpredConfig, run_dir: str | os.PathLike) -> dict:
    """Score every committed, well-formed candidate whose example has no gains yet."""
    import ray

    rcfg = cfg.reasons
    store = PartStore(reasons_dir(run_dir))
    cands = store.scan("candidates", CANDIDATES_SCHEMA).select(
        "example_id", "candidate_id", "format_ok", "reason", "history_json", "target_title").collect()
    # planned on the driver: the prompts of an example must be known as a group (its baseline is scored once),
    # and the committed candidates are a small table (one row per candidate, not per career record)
    todo = plan(cands, store.done(PHASE))
    examples = todo["example_id"].n_unique()
    if not examples:
        return {"todo": 0}
    init_ray(cfg.ray)
    progress = Progress(store.root / "progress.json", PHASE, examples, rcfg.progress_every_s)
    model = engine.model_name(rcfg.judge)
    ds = ray.data.from_arrow(todo.to_arrow())
    ds = ds.map_batches(BuildGainRequests, fn_constructor_kwargs={"cfg": rcfg}, batch_size=16,
                        batch_format="pyarrow", num_cpus=_LIGHT_CPU,
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, rcfg.judge.concurrency)))
    ds = engine.build_processor(rcfg.judge, score=True)(ds)
    ds = ds.map_batches(parse_scores, batch_size=None, batch_format="pyarrow", num_cpus=_LIGHT_CPU)
    committed = run_phase(iter_rows(ds, progress), store, PHASE, lambda groups: to_tables(groups, model),
                          rcfg.commit_every, progress)
    return {"todo": examples, "prompts": todo.height, "committed": committed, **progress.write()}
