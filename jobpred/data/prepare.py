"""`jobpred prepare`: validate career records, normalise titles, build examples, split by person.

Run as:
    jobpred prepare --input data/synth.jsonl --run runs/demo          # Ray Data (local Ray or a cluster)
    jobpred prepare --input data/synth.jsonl --run runs/demo --engine local   # one process, no Ray

Every input line ends up in exactly one place (``read == accepted + rejected``):
- rejected -> ``RUN_DIR/rejected.jsonl`` with its line number, the failing field and a reason (truncated
  JSON, wrong types, missing title, impossible dates, end before start, oversize fields, invalid UTF-8,
  an unknown O*NET code, a duplicate person_id);
- accepted with at least two jobs and a target job that maps to O*NET -> one example (history = the jobs
  before the last one, target = the last job) in ``RUN_DIR/examples/{train,val,test}.parquet``;
- accepted otherwise -> counted in ``summary.json`` under ``no_example`` with the reason.

History budget: jobs are sorted by (start, end); the most recent history jobs are kept while there are at
most ``history_max_jobs`` of them and their serialised size (title + company + description + 40 characters
for keys and dates, per job) stays within ``history_max_chars``; ``truncated_jobs`` records how many older
jobs were dropped. A single job longer than the budget keeps its title and a cut description.

Job titles are data: a title that reads like an instruction is kept verbatim (later stages fence it).

The per-chunk work (:class:`PrepareChunk`) is the same in both engines; with ``engine: ray`` it runs as a
Ray Data ``map_batches`` actor pool over the chunks planned by :mod:`jobpred.data.ingest`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from jobpred import taxonomy  # taxonomy.TitleNormalizer: the normaliser loads on first use
from jobpred.config import PrepareConfig
from jobpred.data import ingest
from jobpred.data.adapters import convert
from jobpred.ray_utils import init_ray
from jobpred.rundir import RunDir
from jobpred.schema import EXAMPLES_SCHEMA, CareerRecord, describe_error, parse_month
from jobpred.storage import Location, location, remove_tree

_STATUS_FIELDS = [
    ("source", pa.string()),
    ("line", pa.int64()),
    ("status", pa.string()),  # example | no_example | rejected
    ("field", pa.string()),
    ("reason", pa.string()),
    ("excerpt", pa.string()),
    ("code_given", pa.int32()),  # experiences whose code came with the record
    ("code_agree", pa.int32()),  # ... of which the normaliser found the same code
    ("code_missing", pa.int32()),  # experiences with no code and no normaliser match
]
CHUNK_SCHEMA = pa.schema(_STATUS_FIELDS + [f for f in EXAMPLES_SCHEMA if f.name != "example_id"])
"""What each chunk returns: one row per input line; example columns null unless status == example."""

_JOB_OVERHEAD = 40  # characters per serialised job for keys, dates and punctuation


def split_of(person_id: str, seed: int, train: float, val: float) -> str:
    """Deterministic person-level split: a keyed hash, so a person is in one split whatever the input order."""
    h = hashlib.blake2b(person_id.encode("utf-8", "surrogatepass"), digest_size=8, key=str(seed).encode())
    u = int.from_bytes(h.digest(), "big") / 2**64
    return "train" if u < train else "val" if u < train + val else "test"


class PrepareChunk:
    """Turns one chunk of input lines into status rows (a Ray Data actor: builds the normaliser once)."""

    def __init__(self, cfg: PrepareConfig) -> None:
        self.cfg = cfg
        self.taxonomy = taxonomy.Taxonomy.load()
        self.normalizer = taxonomy.TitleNormalizer(min_score=cfg.min_match_score)

    def __call__(self, batch: dict) -> pa.Table:
        rows: list[dict] = []
        for i in range(len(batch["path"])):
            chunk = {k: batch[k][i] for k in ("path", "kind", "start", "end", "first_line")}
            for line, raw in ingest.read_chunk(chunk):
                rows.append(self.process(str(chunk["path"]), line, raw))
        return pa.Table.from_pylist(rows, schema=CHUNK_SCHEMA)

    # -- one record ----------------------------------------------------------------------------------
    def process(self, source: str, line: int, raw: bytes | dict) -> dict:
        base = {"source": source, "line": line}
        try:
            if isinstance(raw, bytes):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return self._reject(base, "", f"invalid UTF-8 at byte {exc.start}", raw)
                record = CareerRecord.model_validate_json(raw)
            else:
                record = CareerRecord.model_validate(raw)
        except ValueError as exc:
            field, reason = describe_error(exc)
            return self._reject(base, field, reason, raw)
        return self._example(base, record, raw)

    @staticmethod
    def _reject(base: dict, field: str, reason: str, raw: bytes | dict) -> dict:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else json.dumps(raw, default=str)
        return {**base, "status": "rejected", "field": field, "reason": reason, "excerpt": text[:200]}

    def _example(self, base: dict, record: CareerRecord, raw: bytes | dict) -> dict:
        jobs = sorted(
            enumerate(record.experience),
            key=lambda ie: (parse_month(ie[1].start), parse_month(ie[1].end) if ie[1].end else 10**9),
        )
        resolved, given, agree, missing = [], 0, 0, 0
        for idx, job in jobs:
            match = self.normalizer(job.title)
            if job.onet_code is not None:
                if job.onet_code not in self.taxonomy:
                    field = f"experience.{idx}.onet_code"
                    return self._reject(base, field, f"{field}: {job.onet_code} is not an O*NET-SOC 2019 code", raw)
                code, source, score = job.onet_code, "given", None
                given += 1
                agree += match.code == code
            else:
                code, source, score = match.code, ("normalized" if match.code else "none"), match.score
                missing += code is None
            resolved.append({
                "title": job.title, "company": job.company, "start": job.start, "end": job.end,
                "description": job.description, "onet_code": code,
                "onet_title": self.taxonomy.title(code) if code else None, "code_source": source,
                "match_score": score,
            })
        row = {**base, "status": "no_example", "code_given": given, "code_agree": agree,
               "code_missing": missing, "person_id": record.person_id, "n_jobs": len(resolved)}
        if len(resolved) < 2:
            return {**row, "reason": "fewer than two jobs"}
        target = resolved[-1]
        if target["onet_code"] is None:
            return {**row, "field": f"experience.{jobs[-1][0]}.title",
                    "reason": "target job title did not map to an O*NET occupation"}
        history, chars = self._budget(resolved[:-1])
        return {
            **row, "status": "example",
            "split": split_of(record.person_id, self.cfg.seed, self.cfg.split.train, self.cfg.split.val),
            "education": [e.model_dump() for e in record.education],
            "history": history, "target_code": target["onet_code"], "target_title": target["onet_title"],
            "target_raw_title": target["title"], "target_start": target["start"],
            "truncated_jobs": len(resolved) - 1 - len(history), "history_chars": chars,
        }

    def _budget(self, history: list[dict]) -> tuple[list[dict], int]:
        """Most recent jobs within the job and character budgets (see the module docstring)."""
        budget, kept, used = self.cfg.history_max_chars, [], 0
        for job in reversed(history[-self.cfg.history_max_jobs:]):
            size = _JOB_OVERHEAD + sum(len(job[k] or "") for k in ("title", "company", "description"))
            if used + size > budget:
                if not kept:  # one oversize job: keep it, cut its description to fit
                    room = max(budget - used - size + len(job["description"] or ""), 0)
                    job = {**job, "description": (job["description"] or "")[:room] or None}
                    kept.append(job)
                    used = budget
                break
            kept.append(job)
            used += size
        return kept[::-1], used


def _run_chunks(chunks: list[dict], cfg: PrepareConfig, parts: Location, ray_cfg=None) -> None:
    """Run :class:`PrepareChunk` over every chunk, writing Parquet parts into ``parts``."""
    if cfg.engine == "local":
        worker = PrepareChunk(cfg)
        for i, chunk in enumerate(chunks):
            table = worker({k: [v] for k, v in chunk.items()})
            pq.write_table(table, str(parts / f"part-{i:05d}.parquet"))
        return
    import ray

    init_ray(ray_cfg)
    # Leave one CPU slot free: the Parquet write tasks need one, and an actor pool holding every slot
    # starves them (seen on a 2-CPU Ray: the pipeline crawled at ~15% CPU).
    concurrency = cfg.concurrency or max(1, min(8, int(ray.available_resources().get("CPU", 2)) - 1))
    ds = ray.data.from_items(chunks, override_num_blocks=len(chunks))
    ds = ds.map_batches(
        PrepareChunk, fn_constructor_kwargs={"cfg": cfg}, batch_size=1, num_cpus=1, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
    )
    ds.write_parquet(str(parts))


def prepare(input_path: str | Path, run_dir: str | Path, cfg: PrepareConfig, ray_cfg=None,
            input_format: str = "jsonl") -> dict:
    """Validate, normalise, split; write the run directory's prepare outputs. Returns the summary."""
    started = time.perf_counter()
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    source = location(input_path)
    if input_format in ("jobhop", "karrierewege", "decorte"):
        converted = run.path / "input" / f"{input_format}.jsonl"
        converted.parent.mkdir(parents=True, exist_ok=True)
        conversion = convert(input_format, source, converted)
        source = converted
    else:
        conversion = None
    chunks = ingest.plan(source, int(cfg.chunk_mb * (1 << 20)))
    if not chunks:
        raise ValueError(f"{input_path}: the input has no records (empty file, or a directory of empty files)")
    parts = run.path / "_prepare_parts"
    remove_tree(parts)
    parts.mkdir(parents=True)
    _run_chunks(chunks, cfg, parts, ray_cfg)
    summary = _finish(run, parts, cfg)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["input"] = str(input_path)
    if conversion:
        summary["conversion"] = conversion
    (run.path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    run.record_stage(
        "prepare",
        outputs={"examples": "examples", "rejected": "rejected.jsonl", "summary": "summary.json",
                 **{s: f"examples/{s}.parquet" for s in ("train", "val", "test")}},
        config=cfg, counts={k: summary[k] for k in ("read", "accepted", "rejected", "examples")},
        extra={"input": str(input_path), "format": input_format},
    )
    remove_tree(parts)
    return summary


def _finish(run: RunDir, parts: Location, cfg: PrepareConfig) -> dict:
    """Global steps on the chunk outputs (polars, lazy): duplicates, splits, rejected.jsonl, summary."""
    scan = pl.scan_parquet(str(parts / "*.parquet"))
    kept = scan.filter(pl.col("status") != "rejected").select("source", "line", "person_id")
    first = (kept.sort("source", "line")
             .with_columns(pl.col("line").first().over("person_id").alias("first_line"),
                           pl.col("source").first().over("person_id").alias("first_source"))
             .filter((pl.col("line") != pl.col("first_line")) | (pl.col("source") != pl.col("first_source")))
             .collect())
    dup_keys = first.select("source", "line", "first_line")
    rows = scan.join(dup_keys.lazy(), on=["source", "line"], how="left").with_columns(
        pl.when(pl.col("first_line").is_not_null()).then(pl.lit("rejected")).otherwise(pl.col("status"))
        .alias("status"),
        pl.when(pl.col("first_line").is_not_null()).then(pl.lit("person_id"))
        .otherwise(pl.col("field")).alias("field"),
        pl.when(pl.col("first_line").is_not_null())
        .then(pl.format("person_id: duplicate of line {}", pl.col("first_line")))
        .otherwise(pl.col("reason")).alias("reason"),
        pl.when(pl.col("first_line").is_not_null())
        .then(pl.concat_str([pl.lit("person_id: "), pl.col("person_id").str.slice(0, 150)]))
        .otherwise(pl.col("excerpt")).alias("excerpt"),
    )
    examples_dir = run.path / "examples"
    examples_dir.mkdir(exist_ok=True)
    cols = [f.name for f in EXAMPLES_SCHEMA if f.name != "example_id"]
    for split in ("train", "val", "test"):
        (rows.filter((pl.col("status") == "example") & (pl.col("split") == split))
         .sort("source", "line").select(pl.col("person_id").alias("example_id"), *cols)
         .sink_parquet(str(examples_dir / f"{split}.parquet")))
    rejected = (rows.filter(pl.col("status") == "rejected").sort("source", "line")
                .select("line", "source", "field", "reason", "excerpt").collect())
    with (run.path / "rejected.jsonl").open("w", encoding="utf-8") as f:
        for r in rejected.iter_rows(named=True):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    stats = rows.group_by("status").agg(pl.len().alias("n")).collect()
    by_status = dict(zip(stats["status"], stats["n"]))
    no_ex = (rows.filter(pl.col("status") == "no_example").group_by("reason").agg(pl.len()).collect())
    reasons = (rows.filter(pl.col("status") == "rejected")
               .with_columns(pl.col("reason").str.replace(r"^[\w.]+: ", "").str.slice(0, 60).alias("kind"))
               .group_by("kind").agg(pl.len()).sort("len", descending=True).head(20).collect())
    codes = rows.select(pl.col("code_given").sum(), pl.col("code_agree").sum(), pl.col("code_missing").sum(),
                        (pl.col("truncated_jobs") > 0).sum().alias("truncated")).collect().row(0, named=True)
    splits = rows.filter(pl.col("status") == "example").group_by("split").agg(pl.len()).collect()
    read = int(sum(by_status.values()))
    examples = int(by_status.get("example", 0))
    return {
        "read": read,
        "accepted": examples + int(by_status.get("no_example", 0)),
        "rejected": int(by_status.get("rejected", 0)),
        "examples": examples,
        "splits": dict(zip(splits["split"], map(int, splits["len"]))),
        "no_example": dict(zip(no_ex["reason"], map(int, no_ex["len"]))),
        "rejected_by_reason": dict(zip(reasons["kind"], map(int, reasons["len"]))),
        "examples_truncated": int(codes["truncated"] or 0),
        "codes_given": int(codes["code_given"] or 0),
        "normalizer_agrees_with_given_code": round((codes["code_agree"] or 0) / max(codes["code_given"] or 0, 1), 4),
        "experiences_without_code": int(codes["code_missing"] or 0),
    }
