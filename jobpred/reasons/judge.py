"""Judge: every well-formed candidate scored on factuality, coherence and utility, in ONE Ray Data execution.

Run as part of ``jobpred reasons`` (or ``judge.run(cfg, run_dir)`` after :mod:`.generate`).

Each candidate with a reason and an answer becomes three judge requests (one per criterion, each with the
criterion's JSON schema as a vLLM structured output / ``response_format``); all three criteria of all
candidates go through one processor. The factuality judge sees the history exactly as the teacher did,
cut further (oldest jobs first, recorded) only if the judge's context is smaller.

A judgement whose output does not parse against the schema is committed as ``parse_failed`` (attempt 1)
and retried once, in a second execution that runs only when there are such rows (temperature
``judge_retry_temperature``, another seed); a retry that fails again stays ``parse_failed`` (attempt 2).
Nothing is defaulted: :mod:`.select` only uses judgements with status ``ok``.
"""

from __future__ import annotations

import json
import os

import polars as pl
import pyarrow as pa

from jobpred.config import JobpredConfig, ReasonsConfig
from jobpred.llm import engine
from jobpred.llm.budget import PromptTooLong, TokenCounter, fit_history
from jobpred.llm.prompts import (
    CRITERIA,
    JUDGE_SCHEMAS,
    PROMPTS,
    history_format,
    judge_messages,
    split_history,
)
from jobpred.ray_utils import init_ray
from jobpred.reasons.generate import MESSAGES_TYPE, seed_of
from jobpred.reasons.store import PartStore, Progress, iter_rows, now_iso, reasons_dir, run_phase
from jobpred.schema import CANDIDATES_SCHEMA, JUDGEMENTS_SCHEMA, REASON_ERRORS_SCHEMA

PHASE, RETRY_PHASE = "judge", "judge_retry"
_LIGHT_CPU = 0.1
_PLACEHOLDER = [{"role": "user", "content": "-"}]
_CANDIDATE_COLUMNS = ["example_id", "candidate_id", "history_json", "reason", "target_title", "n_judgeable"]

REQUEST_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("candidate_id", pa.string()), ("criterion", pa.string()),
    ("attempt", pa.int8()), ("prompt_version", pa.string()), ("sampling", pa.string()),
    ("messages", MESSAGES_TYPE), ("history_jobs_dropped", pa.int32()), ("budget_error", pa.string()),
    ("group_key", pa.string()), ("group_size", pa.int32()),
])
PARSED_SCHEMA = pa.schema(
    [f for f in JUDGEMENTS_SCHEMA if f.name != "committed_at"]
    + [pa.field("group_key", pa.string()), pa.field("group_size", pa.int32())]
)


class BuildJudgeRequests:
    """Ray Data actor: candidate rows -> one judge request per criterion (loads the judge's tokenizer once).

    ``attempt`` 1 groups an example's requests together (3 x its judgeable candidates); attempt 2 (the
    retry) is one group per (candidate, criterion) and carries only the criterion to redo.
    """

    def __init__(self, cfg: ReasonsConfig, attempt: int = 1) -> None:
        self.cfg, self.attempt, self.count = cfg, attempt, TokenCounter(cfg.judge)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for cand in batch.to_pylist():
            criteria = [cand["criterion"]] if self.attempt > 1 else list(CRITERIA)
            for criterion in criteria:
                rows.append(self._request(cand, criterion))
        return pa.Table.from_pylist(rows, schema=REQUEST_SCHEMA)

    def _request(self, cand: dict, criterion: str) -> dict:
        cfg = self.cfg
        temperature = cfg.judge_temperature if self.attempt == 1 else cfg.judge_retry_temperature
        sampling = {"temperature": temperature, "top_p": 1.0, "max_tokens": cfg.judge_max_tokens,
                    "seed": seed_of(cfg.seed, cand["candidate_id"], criterion, self.attempt),
                    "json_schema": JUDGE_SCHEMAS[criterion]}
        if self.attempt == 1:
            key, size = cand["example_id"], 3 * cand["n_judgeable"]
        else:
            key, size = f"{cand['candidate_id']}|{criterion}", 1
        row = {"example_id": cand["example_id"], "candidate_id": cand["candidate_id"], "criterion": criterion,
               "attempt": self.attempt,
               "prompt_version": PROMPTS[criterion].tagged(history_format(cand["history_json"] or "")),
               "sampling": json.dumps(sampling), "history_jobs_dropped": 0, "budget_error": None,
               "group_key": key, "group_size": size}

        def build(history: str) -> list[dict]:
            return judge_messages(criterion, history, cand["reason"], cand["target_title"])

        try:
            if criterion == "factuality":
                education, jobs = split_history(cand["history_json"])
                # re-fitted in the rendering the teacher saw
                history, dropped, _ = fit_history(self.count, self.count.context, build, education, jobs,
                                                  cfg.judge_max_tokens, history_format(cand["history_json"]))
                row["history_jobs_dropped"] = dropped
            else:
                history = cand["history_json"]
                used = self.count(build(history))
                if used + cfg.judge_max_tokens > self.count.context:
                    raise PromptTooLong(f"{criterion} prompt needs {used} tokens; the budget is "
                                        f"{self.count.context - cfg.judge_max_tokens}")
            row["messages"] = build(history)
        except PromptTooLong as exc:
            # same keys and schema as real rows (see generate.BuildCandidateRequests), 1 token
            row.update(messages=_PLACEHOLDER, budget_error=str(exc), sampling=json.dumps({**sampling, "max_tokens": 1}))
        return row


def parse_judgements(batch: pa.Table, model: str) -> pa.Table:
    """Engine rows -> judgement rows: ok (typed rubric fields), parse_failed, or error (with the problem)."""
    out = []
    for r in batch.to_pylist():
        row = {k: r[k] for k in ("example_id", "candidate_id", "criterion", "attempt", "prompt_version",
                                 "sampling", "prompt_tokens", "generated_tokens", "llm_seconds",
                                 "history_jobs_dropped", "group_key", "group_size")}
        row.update(model=model, raw_output=r["generated_text"] or None, score=None, problem=None)
        if r["budget_error"]:
            row.update(status="error", problem=r["budget_error"], raw_output=None, prompt_tokens=None,
                       generated_tokens=0, llm_seconds=None)
        elif r["llm_error"]:
            row.update(status="error", problem=r["llm_error"])
        else:
            try:
                row.update(PROMPTS[r["criterion"]].parse(r["generated_text"]), status="ok")
            except ValueError as exc:
                row.update(status="parse_failed", problem=str(exc))
        out.append(row)
    return pa.Table.from_pylist(out, schema=PARSED_SCHEMA)


def to_tables(groups: list[list[dict]]) -> tuple[dict[str, pa.Table], list[str]]:
    at = now_iso()
    rows = [{**r, "committed_at": at} for g in groups for r in g]
    rows.sort(key=lambda r: (r["candidate_id"], CRITERIA.index(r["criterion"])))
    errors = [{"example_id": r["example_id"], "stage": PHASE if r["attempt"] == 1 else RETRY_PHASE,
               "scope": "judgement", "candidate_id": r["candidate_id"], "criterion": r["criterion"],
               "error": f"{r['status']}: {r['problem']}", "model": r["model"], "prompt_version": r["prompt_version"],
               "committed_at": at} for r in rows if r["status"] != "ok"]
    return {"judgements": pa.Table.from_pylist(rows, schema=JUDGEMENTS_SCHEMA),
            "errors": pa.Table.from_pylist(errors, schema=REASON_ERRORS_SCHEMA)}, [g[0]["group_key"] for g in groups]


def judge_pipeline(ds, rcfg: ReasonsConfig, attempt: int = 1):
    """Candidate rows (example_id, candidate_id, history_json, reason, target_title, n_judgeable) -> judgement
    rows (PARSED_SCHEMA), three per candidate on attempt 1. Also used to judge predicted reasons."""
    import ray

    ds = ds.map_batches(BuildJudgeRequests, fn_constructor_kwargs={"cfg": rcfg, "attempt": attempt},
                        batch_size=16, batch_format="pyarrow", num_cpus=_LIGHT_CPU,
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, rcfg.judge.concurrency)))
    ds = engine.build_processor(rcfg.judge)(ds)
    return ds.map_batches(parse_judgements, fn_kwargs={"model": engine.model_name(rcfg.judge)}, batch_size=None,
                          batch_format="pyarrow", num_cpus=_LIGHT_CPU)


def run(cfg: JobpredConfig, run_dir: str | os.PathLike) -> dict:
    """Judge every committed, well-formed candidate not judged yet, then retry failed parses once."""
    import ray

    rcfg = cfg.reasons
    store = PartStore(reasons_dir(run_dir))
    done = store.done(PHASE)
    todo = (store.scan("candidates", CANDIDATES_SCHEMA).filter(pl.col("format_ok"))
            .filter(~pl.col("example_id").is_in(list(done))).select("example_id").unique().collect())
    stats: dict = {"todo": todo.height}
    if todo.height:
        init_ray(cfg.ray)
        progress = Progress(store.root / "progress.json", PHASE, todo.height, rcfg.progress_every_s)
        ds = ray.data.read_parquet([str(f) for f in store.files("candidates")], num_cpus=_LIGHT_CPU)
        ds = ds.select_columns([*_CANDIDATE_COLUMNS, "format_ok"])
        ds = ds.map_batches(_todo, fn_kwargs={"done": pa.array(sorted(done), pa.string())}, batch_size=None,
                            batch_format="pyarrow", num_cpus=_LIGHT_CPU)
        rows = iter_rows(judge_pipeline(ds, rcfg, 1), progress)
        committed = run_phase(rows, store, PHASE, to_tables, rcfg.commit_every, progress)
        stats.update(committed=committed, **progress.write())
    stats["retry"] = _retry(cfg, store)
    return stats


def _todo(batch: pa.Table, done: pa.Array) -> pa.Table:
    import pyarrow.compute as pc

    keep = pc.and_(batch.column("format_ok"), pc.invert(pc.is_in(batch.column("example_id"), value_set=done)))
    return batch.filter(keep).drop_columns(["format_ok"])


def _retry(cfg: JobpredConfig, store: PartStore) -> dict:
    """The single retry of attempt-1 judgements that failed to parse (an execution only when there are any)."""
    import ray

    rcfg = cfg.reasons
    done = store.done(RETRY_PHASE)
    failed = (store.scan("judgements", JUDGEMENTS_SCHEMA)
              .filter((pl.col("attempt") == 1) & (pl.col("status") == "parse_failed"))
              .select("candidate_id", "criterion")
              .filter(~(pl.col("candidate_id") + "|" + pl.col("criterion")).is_in(list(done))))
    cands = store.scan("candidates", CANDIDATES_SCHEMA).select(_CANDIDATE_COLUMNS)
    todo = failed.join(cands, on="candidate_id", how="inner").collect()
    if todo.height == 0:
        return {"todo": 0}
    init_ray(cfg.ray)
    progress = Progress(store.root / "progress.json", RETRY_PHASE, todo.height, rcfg.progress_every_s)
    ds = ray.data.from_arrow(todo.to_arrow())
    rows = iter_rows(judge_pipeline(ds, rcfg, 2), progress)
    committed = run_phase(rows, store, RETRY_PHASE, to_tables, rcfg.commit_every, progress)
    return {"todo": todo.height, "committed": committed, **progress.write()}
