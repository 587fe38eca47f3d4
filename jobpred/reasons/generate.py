"""Candidates: N reasons per training example from the teacher, in ONE Ray Data execution.

Run as part of ``jobpred reasons --config CFG --run RUN_DIR`` (or ``generate.run(cfg, run_dir)``).

Pipeline (streaming; the driver only sees finished rows):
    read_parquet(examples/<split>.parquet) -> keep planned ids not done yet
    -> BuildCandidateRequests (budget rule, N plain [+ N hinted] chat requests per example)
    -> engine.build_processor(teacher)  (ray.data.llm: chat template, tokenizer, vLLM or HTTP)
    -> ParseCandidates (reason / answer blocks, answer -> O*NET code)
    -> driver: rows grouped per example, committed ``commit_every`` examples at a time (store.PartStore)

An example whose prompt cannot fit the teacher's context even with only its most recent job sends one
placeholder request (1 token, never used) and is committed to ``errors`` (scope example); a candidate the
engine fails on is a candidates row with ``error`` set, plus an ``errors`` row (scope candidate).
"""

from __future__ import annotations

import hashlib
import json
import os

import polars as pl
import pyarrow as pa

from jobpred import taxonomy  # taxonomy.TitleNormalizer: the normaliser loads on first use
from jobpred.config import JobpredConfig, ReasonsConfig
from jobpred.llm import engine
from jobpred.llm.budget import PromptTooLong, TokenCounter, fit_history
from jobpred.llm.prompts import (
    PROMPTS,
    THINK_PREFILL,
    candidate_messages,
    candidate_regex,
    parse_candidate,
)
from jobpred.ray_utils import init_ray
from jobpred.reasons.store import PartStore, Progress, iter_rows, now_iso, plan_ids, reasons_dir, run_phase
from jobpred.rundir import RunDir
from jobpred.schema import CANDIDATES_SCHEMA, EXAMPLES_SCHEMA, REASON_ERRORS_SCHEMA, require_columns

PHASE = "candidates"
_LIGHT_CPU = 0.1
_PLACEHOLDER = [{"role": "user", "content": "-"}]
_INPUT_COLUMNS = ["example_id", "education", "history", "target_code", "target_title"]
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

REQUEST_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("candidate_id", pa.string()), ("variant", pa.string()),
    ("candidate_idx", pa.int32()), ("history_json", pa.string()), ("history_jobs_dropped", pa.int32()),
    ("target_code", pa.string()), ("target_title", pa.string()), ("prompt_version", pa.string()),
    ("sampling", pa.string()), ("messages", MESSAGES_TYPE), ("budget_error", pa.string()),
    ("group_key", pa.string()), ("group_size", pa.int32()),
])
"""What BuildCandidateRequests sends to the engine (explicit, so an all-error batch has the same types)."""

PARSED_SCHEMA = pa.schema(
    [f for f in CANDIDATES_SCHEMA if f.name not in ("n_judgeable", "committed_at")]
    + [pa.field("group_key", pa.string()), pa.field("group_size", pa.int32()), pa.field("error_scope", pa.string())]
)


def seed_of(base: int, *parts: object) -> int:
    """A stable 31-bit seed per (base, example, variant, index): reruns sample the same candidates."""
    h = hashlib.blake2b("\x1f".join(map(str, (base, *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x7FFFFFFF


def variants(cfg: ReasonsConfig) -> list[str]:
    return ["candidate", "hinted"] if cfg.hinted else ["candidate"]


def _prefill(cfg: ReasonsConfig) -> bool:
    return cfg.prefill_think and cfg.teacher.backend == "vllm"


class BuildCandidateRequests:
    """Ray Data actor: example rows -> candidate request rows (loads the teacher's tokenizer once)."""

    def __init__(self, cfg: ReasonsConfig, history_format: str) -> None:
        self.cfg, self.count, self.history_format = cfg, TokenCounter(cfg.teacher), history_format
        self.prefill = _prefill(cfg)
        self.regex = None
        if cfg.constrain_format and cfg.teacher.backend == "vllm":
            tax = taxonomy.Taxonomy.load()
            titles = tax.titles()
            self.regex = candidate_regex(cfg.max_tokens, self.prefill, titles)

    def _messages(self, variant: str, history: str, target_title: str) -> list[dict]:
        hint = target_title if variant == "hinted" else None
        return candidate_messages(history, hinted_title=hint, prefill=self.prefill)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        kinds = variants(self.cfg)
        for ex in batch.to_pylist():
            longest = kinds[-1]  # the hinted prompt is the longer one: fit the history to it
            try:
                history, dropped, _ = fit_history(
                    self.count, self.count.context,
                    lambda h, ex=ex, kind=longest: self._messages(kind, h, ex["target_title"]),
                    ex["education"], ex["history"], self.cfg.max_tokens, self.history_format)
            except PromptTooLong as exc:
                # the same sampling keys and constraint as real rows: Ray Data concatenates blocks of these
                # rows, and a struct field that is all-null in one block and typed in another breaks it
                sampling = {**self._sampling(ex, "candidate", 0), "max_tokens": 1}
                rows.append(self._row(ex, "candidate", 0, None, 0, _PLACEHOLDER, sampling, 1, str(exc)))
                continue
            size = len(kinds) * self.cfg.n_candidates
            for kind in kinds:
                for i in range(self.cfg.n_candidates):
                    sampling = self._sampling(ex, kind, i)
                    msgs = self._messages(kind, history, ex["target_title"])
                    rows.append(self._row(ex, kind, i, history, dropped, msgs, sampling, size, None))
        return pa.Table.from_pylist(rows, schema=REQUEST_SCHEMA)

    def _sampling(self, ex: dict, kind: str, i: int) -> dict:
        sampling = {"temperature": self.cfg.temperature, "top_p": self.cfg.top_p,
                    "max_tokens": self.cfg.max_tokens, "seed": seed_of(self.cfg.seed, ex["example_id"], kind, i)}
        if self.regex:
            sampling["regex"] = self.regex
        return sampling

    def _row(self, ex, kind, i, history, dropped, messages, sampling, size, budget_error) -> dict:
        variant = "hinted" if kind == "hinted" else "plain"
        return {"example_id": ex["example_id"], "candidate_id": f"{ex['example_id']}/{variant}/{i}",
                "variant": variant, "candidate_idx": i, "history_json": history, "history_jobs_dropped": dropped,
                "target_code": ex["target_code"], "target_title": ex["target_title"],
                "prompt_version": PROMPTS[kind].tagged(self.history_format), "sampling": json.dumps(sampling),
                "messages": messages, "budget_error": budget_error,
                "group_key": ex["example_id"], "group_size": size}


class ParseCandidates:
    """Ray Data actor: engine rows -> parsed candidates (builds the O*NET title normaliser once)."""

    def __init__(self, cfg: ReasonsConfig) -> None:
        self.normalizer = taxonomy.TitleNormalizer()
        self.prefill = _prefill(cfg)
        self.model = engine.model_name(cfg.teacher)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for r in batch.to_pylist():
            row = {k: r[k] for k in ("example_id", "candidate_id", "variant", "candidate_idx", "history_json",
                                     "history_jobs_dropped", "target_code", "target_title", "prompt_version",
                                     "prompt_tokens", "generated_tokens", "llm_seconds", "group_key", "group_size")}
            row["sampling"] = record_sampling(r["sampling"])
            row.update(model=self.model, raw_output=None, reason=None, answer=None, answer_code=None,
                       format_ok=False, format_problem=None, error=None, error_scope=None)
            if r["budget_error"]:
                row.update(error=r["budget_error"], error_scope="example", prompt_tokens=None,
                           generated_tokens=0, llm_seconds=None)
            elif r["llm_error"]:
                row.update(error=r["llm_error"], error_scope="candidate")
            else:
                text = (THINK_PREFILL + r["generated_text"]) if self.prefill else r["generated_text"]
                parsed = parse_candidate(text)
                row.update(raw_output=text, reason=parsed.reason, answer=parsed.answer, format_ok=parsed.ok,
                           format_problem=parsed.problem)
                if parsed.answer:
                    row["answer_code"] = self.normalizer(parsed.answer).code
            out.append(row)
        return pa.Table.from_pylist(out, schema=PARSED_SCHEMA)


def record_sampling(sampling: str) -> str:
    """The sampling JSON as stored on output rows: a constraint regex (tens of kB with the O*NET titles)
    is replaced by its length and hash, the same for every row of a run."""
    params = json.loads(sampling)
    if params.get("regex"):
        digest = hashlib.blake2b(params["regex"].encode(), digest_size=6).hexdigest()
        params["regex"] = f"<{len(params['regex'])} chars, blake2b {digest}>"
    return json.dumps(params)


def to_tables(groups: list[list[dict]]) -> tuple[dict[str, pa.Table], list[str]]:
    """Complete examples -> one commit: candidates rows, errors rows, done example ids."""
    at = now_iso()
    cands, errors, done = [], [], []
    for rows in groups:
        done.append(rows[0]["example_id"])
        if rows[0]["error_scope"] == "example":
            errors.append(_error(rows[0], "example", at))
            continue
        judgeable = sum(bool(r["format_ok"]) for r in rows)
        for r in sorted(rows, key=lambda r: (r["variant"], r["candidate_idx"])):
            cands.append({**r, "n_judgeable": judgeable, "committed_at": at})
            if r["error"]:
                errors.append(_error(r, "candidate", at))
    return {"candidates": pa.Table.from_pylist(cands, schema=CANDIDATES_SCHEMA),
            "errors": pa.Table.from_pylist(errors, schema=REASON_ERRORS_SCHEMA)}, done


def _error(r: dict, scope: str, at: str) -> dict:
    return {"example_id": r["example_id"], "stage": PHASE, "scope": scope,
            "candidate_id": None if scope == "example" else r["candidate_id"], "criterion": None,
            "error": r["error"], "model": r["model"], "prompt_version": r["prompt_version"], "committed_at": at}


def run(cfg: JobpredConfig, run_dir: str | os.PathLike) -> dict:
    """Generate the candidates of every planned example not done yet; returns this run's counts."""
    import ray

    rcfg, run = cfg.reasons, RunDir(run_dir)
    examples = run.output("prepare", rcfg.split)
    require_columns(pl.scan_parquet(str(examples)).collect_schema().names(), EXAMPLES_SCHEMA, f"{examples}")
    store = PartStore(reasons_dir(run_dir))
    plan = plan_ids(examples, rcfg.max_examples)
    done = store.done(PHASE)
    todo = [i for i in plan if i not in done]
    progress = Progress(store.root / "progress.json", PHASE, len(todo), rcfg.progress_every_s)
    if not todo:
        return {"planned": len(plan), "todo": 0}
    init_ray(cfg.ray)
    keep = pa.array(todo, pa.string())
    ds = ray.data.read_parquet(str(examples), num_cpus=_LIGHT_CPU).select_columns(_INPUT_COLUMNS)
    ds = ds.map_batches(_keep, fn_kwargs={"ids": keep}, batch_size=None, batch_format="pyarrow",
                        num_cpus=_LIGHT_CPU)
    ds = ds.map_batches(BuildCandidateRequests, fn_constructor_kwargs={"cfg": rcfg, "history_format": cfg.history_format}, batch_size=16,
                        batch_format="pyarrow", num_cpus=_LIGHT_CPU,
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, rcfg.teacher.concurrency)))
    ds = engine.build_processor(rcfg.teacher)(ds)
    ds = ds.map_batches(ParseCandidates, fn_constructor_kwargs={"cfg": rcfg}, batch_size=None, batch_format="pyarrow",
                        num_cpus=_LIGHT_CPU, compute=ray.data.ActorPoolStrategy(size=1))
    committed = run_phase(iter_rows(ds, progress), store, PHASE, to_tables, rcfg.commit_every, progress)
    return {"planned": len(plan), "todo": len(todo), "committed": committed, **progress.write()}


def _keep(batch: pa.Table, ids: pa.Array) -> pa.Table:
    import pyarrow.compute as pc

    return batch.filter(pc.is_in(batch.column("example_id"), value_set=ids))
