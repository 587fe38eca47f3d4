"""Resumable outputs of the reasons stage: atomic multi-table commits of Parquet parts, and progress.

Layout under ``RUN_DIR/reasons/``::

    candidates/part-000003-1a2b3c4d.parquet    one file per table per commit
    judgements/part-...  errors/part-...  _done/part-...
    _commits/000003-1a2b3c4d.json             the commit marker, written last (atomically)
    progress.json                             rows done, rows/s, tokens/s, ETA (updated while running)

A commit writes its table files (each via a temporary name and a rename), then its marker. Readers only
see files named by a marker, so a job killed at any instant leaves either a whole commit or nothing; on
restart :meth:`PartStore.recover` deletes the files of unfinished commits. Each commit also records the
keys it completed (``_done``: phase, key); a phase skips the keys already done. Work is grouped so that a
key's rows (an example's candidates, or all of its judgements) always land in one commit: a restart
neither repeats nor loses a key.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator

import polars as pl
import pyarrow as pa

from jobpred.storage import Location, location, write_parquet_atomic, write_text_atomic

DONE_SCHEMA = pa.schema([("phase", pa.string()), ("key", pa.string())])


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class PartStore:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = location(root)
        self.markers = self.root / "_commits"

    def _marker_files(self) -> list[Location]:
        return sorted(self.markers.glob("*.json")) if self.markers.exists() else []

    def _committed(self) -> dict[str, list[Location]]:
        tables: dict[str, list[Location]] = {}
        for marker in self._marker_files():
            for table, name in json.loads(marker.read_text())["files"].items():
                tables.setdefault(table, []).append(self.root / table / name)
        return tables

    def recover(self) -> int:
        """Delete table files that no commit marker names (a crash mid-commit); returns how many."""
        keep = {str(p) for files in self._committed().values() for p in files}
        removed = 0
        for path in self.root.glob("*/part-*"):
            if path.parent.name != "_commits" and str(path) not in keep:
                path.unlink()
                removed += 1
        for tmp in self.markers.glob("*.tmp") if self.markers.exists() else []:
            tmp.unlink()
        return removed

    def commit(self, phase: str, tables: dict[str, pa.Table], done: Iterable[str]) -> str:
        """Write ``tables`` (name -> rows) and the ``done`` keys of ``phase`` as one atomic commit."""
        seq = len(self._marker_files())
        stamp = f"{seq:06d}-{uuid.uuid4().hex[:8]}"
        done = list(done)
        tables = {**tables, "_done": pa.table({"phase": [phase] * len(done), "key": done}, schema=DONE_SCHEMA)}
        files = {}
        for name, table in tables.items():
            if table.num_rows == 0:
                continue
            final = self.root / name / f"part-{stamp}.parquet"
            write_parquet_atomic(table, final)
            files[name] = final.name
        rows = {name: t.num_rows for name, t in tables.items()}
        write_text_atomic(self.markers / f"{stamp}.json",
                          json.dumps({"phase": phase, "files": files, "rows": rows, "at": now_iso()}))
        return stamp

    def files(self, table: str) -> list[Location]:
        return self._committed().get(table, [])

    def scan(self, table: str, schema: pa.Schema) -> pl.LazyFrame:
        """The committed rows of ``table`` (an empty frame with ``schema`` when there are none)."""
        files = self.files(table)
        if not files:
            return pl.from_arrow(schema.empty_table()).lazy()
        return pl.scan_parquet([str(f) for f in files])

    def done(self, phase: str) -> set[str]:
        keys = self.scan("_done", DONE_SCHEMA).filter(pl.col("phase") == phase).select("key").collect()
        return set(keys["key"].to_list())


class GroupCollector:
    """Holds a phase's output rows until all rows of a group (``group_key``, ``group_size``) have arrived.

    Memory is bounded by the rows in flight in the pipeline, not by the input size.
    """

    def __init__(self) -> None:
        self.pending: dict[str, list[dict]] = {}
        self.ready: list[list[dict]] = []

    def add(self, row: dict) -> None:
        rows = self.pending.setdefault(row["group_key"], [])
        rows.append(row)
        if len(rows) >= row["group_size"]:
            self.ready.append(self.pending.pop(row["group_key"]))

    def take(self) -> list[list[dict]]:
        ready, self.ready = self.ready, []
        return ready


class Progress:
    """Rows done, rows/s, generated tokens/s and ETA of one phase: a log line and ``progress.json``."""

    def __init__(self, path: Location, phase: str, total_groups: int, every_s: float) -> None:
        self.path, self.phase, self.total, self.every_s = path, phase, total_groups, every_s
        self.start = self.last = time.perf_counter()
        self.groups = self.rows = self.tokens = self.blocks = 0
        self.first_row_s: float | None = None

    def update(self, groups: int, rows: int, tokens: int, force: bool = False) -> None:
        if self.first_row_s is None and rows:
            self.first_row_s = time.perf_counter() - self.start  # engine start + first batch
        self.groups += groups
        self.rows += rows
        self.tokens += tokens
        if force or time.perf_counter() - self.last >= self.every_s:
            self.last = time.perf_counter()
            self.write()

    def snapshot(self) -> dict:
        elapsed = time.perf_counter() - self.start
        rate = self.groups / elapsed if elapsed > 0 else 0.0
        left = self.total - self.groups
        return {"phase": self.phase, "groups_done": self.groups, "groups_total": self.total, "rows": self.rows,
                "blocks": self.blocks,
                "generated_tokens": self.tokens, "elapsed_s": round(elapsed, 1),
                "rows_per_s": round(self.rows / elapsed, 2) if elapsed else 0.0,
                "tokens_per_s": round(self.tokens / elapsed, 1) if elapsed else 0.0,
                "first_output_s": round(self.first_row_s, 1) if self.first_row_s is not None else None,
                "eta_s": round(left / rate) if rate > 0 else None, "updated_at": now_iso()}

    def write(self) -> dict:
        snap = self.snapshot()
        print("reasons {phase}: {groups_done}/{groups_total} done, {rows} rows, {rows_per_s} rows/s, "
              "{tokens_per_s} generated tokens/s, eta {eta_s}s".format(**snap), file=sys.stderr, flush=True)
        write_text_atomic(self.path, json.dumps(snap, indent=2) + "\n")
        return snap


def iter_rows(ds, progress: Progress | None = None) -> Iterator[dict]:
    """Stream a Ray Dataset's rows to the driver, block by block (counted in ``progress.blocks``: with one
    engine batch per block, :func:`jobpred.llm.engine.engine_batches`, there is a block per engine batch)."""
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if progress is not None:
            progress.blocks += 1
        yield from batch.to_pylist()


def run_phase(rows: Iterable[dict], store: PartStore, phase: str, to_tables: Callable, commit_every: int,
              progress: Progress) -> int:
    """Collect ``rows`` into complete groups and commit them ``commit_every`` groups at a time.

    ``to_tables(groups) -> ({table: pa.Table}, done_keys)`` turns complete groups into a commit. Returns
    the number of groups committed. Groups still incomplete when the rows run out are not committed (a
    later run redoes them) and raise, so a silent loss is impossible.
    """
    collector, buffer, committed = GroupCollector(), [], 0

    def flush() -> None:
        nonlocal committed
        tables, done = to_tables(buffer)
        store.commit(phase, tables, done)
        committed += len(buffer)
        progress.update(len(buffer), 0, 0, force=True)
        buffer.clear()

    for row in rows:
        collector.add(row)
        progress.update(0, 1, int(row.get("generated_tokens") or 0))
        buffer.extend(collector.take())
        if len(buffer) >= commit_every:
            flush()
    if buffer:
        flush()
    if collector.pending:
        raise RuntimeError(f"reasons {phase}: {len(collector.pending)} group(s) came back incomplete and were "
                           "not committed; run the stage again to redo them")
    return committed


# ---- where the stage's inputs and outputs live --------------------------------------------------------


def reasons_dir(run_dir: str | os.PathLike) -> Location:
    return location(run_dir) / "reasons"  # absolute: Ray Data's writers run in other processes


def plan_ids(examples: Location, max_examples: int | None) -> list[str]:
    """The examples this stage must account for: the first ``max_examples`` of the split, in file order.

    Deterministic, so a restarted run plans the same examples (and a larger ``max_examples`` extends it).
    """
    scan = pl.scan_parquet(str(examples)).select("example_id")
    if max_examples is not None:
        scan = scan.head(max_examples)
    return scan.collect()["example_id"].to_list()
