"""Training data: oracle reasons / DPO pairs joined to their histories, tokenised with Ray Data, and the order
in which a worker visits its shard.

Driver side (:mod:`jobpred.train.trainer`):
    table = sft_table(run_dir, "joint", cfg.train)        # idx, example_id, education, history, reason, title
    ds, examples = tokenize(table, "joint", "sft", model_path, cfg.train)   # materialised Ray Dataset
Worker side (:mod:`jobpred.train.loop`):
    rows = read_shard(ray.train.get_dataset_shard("train"), rows_per_worker)
    micro_batches = step_rows(rows, step, plan)

Data order. The Ray Dataset is built with ``preserve_order`` and materialised before training, and Ray
Train splits it with ``streaming_split(equal=True)`` under ``preserve_order`` too, so each worker receives
the same rows in every attempt (``equal`` drops at most ``world - 1`` rows so that all workers take the
same number of steps). A worker reads its shard once (token ids only: ~8 bytes a token, 10k examples of
2k tokens over 8 workers is ~20 MB each), sorts it by ``idx`` and visits it in a permutation seeded by
(seed, epoch, rank). The rows of optimiser step ``s`` are therefore a pure function of ``s``
(:func:`step_rows`): a run resumed from the checkpoint of step ``s`` sees exactly the batches that an
uninterrupted run would have seen from step ``s + 1`` on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from jobpred.config import TrainConfig
from jobpred.models import compute_dtype
from jobpred.ray_utils import niceness_env
from jobpred.rundir import RunDir
from jobpred.schema import (
    DPO_PAIRS_SCHEMA,
    EXAMPLES_SCHEMA,
    ORACLE_SCHEMA,
    TRAIN_EXAMPLES_SCHEMA,
    require_columns,
)
from jobpred.storage import Location, local_copy, location, write_parquet_atomic
from jobpred.train.formats import preference_features, preference_target, sft_features
from jobpred.train.objectives import Collator, reference_logps

_IDS = pa.list_(pa.int32())
_META = [("idx", pa.int64()), ("example_id", pa.string()), ("fits", pa.bool_()), ("dropped_jobs", pa.int32()),
         ("prompt_tokens", pa.int32()), ("target_tokens", pa.int32())]
TOKEN_SCHEMAS = {
    "sft": pa.schema(_META + [("input_ids", _IDS), ("labels", _IDS)]),
    "dpo": pa.schema(_META + [("prompt_ids", _IDS), ("chosen_ids", _IDS), ("rejected_ids", _IDS)]),
}
"""In-memory rows handed to the workers (never written): token ids per objective."""
_TOKENIZE_CPUS = 0.5


# ---- tables (polars, on the driver) -------------------------------------------------------------------


def _histories(run: RunDir) -> pl.LazyFrame:
    examples = run.output("prepare", "examples")
    scan = pl.scan_parquet(str(examples / "*.parquet"))
    require_columns(scan.collect_schema().names(), EXAMPLES_SCHEMA, f"{examples}")
    return scan.select("example_id", "education", "history")


def _reasons_table(run: RunDir, name: str, schema: pa.Schema) -> pl.LazyFrame:
    path = run.output("reasons", name)
    scan = pl.scan_parquet(str(path))
    require_columns(scan.collect_schema().names(), schema, f"{path}")
    return scan


def _finish(frame: pl.DataFrame, max_examples: int | None, what: str) -> pa.Table:
    frame = frame.sort("example_id")
    if max_examples is not None:
        frame = frame.head(max_examples)
    if frame.height == 0:
        raise ValueError(f"no usable rows for {what}: run `jobpred reasons` first, or check its outcomes")
    return frame.with_row_index("idx").with_columns(pl.col("idx").cast(pl.Int64)).to_arrow()


def sft_table(run_dir: str | os.PathLike, role: str, tcfg: TrainConfig) -> pa.Table:
    """Oracle rows joined to their histories: idx, example_id, education, history, reason, title (true)."""
    run = RunDir(run_dir)
    oracle = (_reasons_table(run, "oracle", ORACLE_SCHEMA)
              .filter(pl.col("reason").is_not_null() & pl.col("target_title").is_not_null())
              .select("example_id", "reason", pl.col("target_title").alias("title")))
    frame = oracle.join(_histories(run), on="example_id", how="left").collect()
    orphans = frame.filter(pl.col("history").is_null()).height
    if orphans:
        raise ValueError(f"{orphans} oracle row(s) name examples that `jobpred prepare` did not write")
    return _finish(frame, tcfg.max_examples, f"{role} SFT")


def dpo_table(run_dir: str | os.PathLike, role: str, tcfg: TrainConfig) -> pa.Table:
    """DPO pairs in the role's format joined to their histories: idx, example_id, education, history,
    chosen, rejected. Pairs whose sides coincide in the role's format (same reason) are left out."""
    run = RunDir(run_dir)
    pairs = _reasons_table(run, "dpo_pairs", DPO_PAIRS_SCHEMA).select(
        "example_id", "chosen_output", "rejected_output").collect()
    pairs = pairs.with_columns(
        chosen=pl.col("chosen_output").map_elements(lambda t: preference_target(role, t), return_dtype=pl.String),
        rejected=pl.col("rejected_output").map_elements(lambda t: preference_target(role, t),
                                                        return_dtype=pl.String),
    ).filter(pl.col("chosen").is_not_null() & pl.col("rejected").is_not_null()
             & (pl.col("chosen") != pl.col("rejected")))
    frame = pairs.lazy().select("example_id", "chosen", "rejected").join(
        _histories(run), on="example_id", how="inner").collect()
    return _finish(frame, tcfg.max_examples, f"{role} DPO")


# ---- tokenising (Ray Data actors) ---------------------------------------------------------------------


class Tokenize:
    """Ray Data actor: table rows -> token rows (:data:`TOKEN_SCHEMAS`) under the cutoff rule."""

    def __init__(self, model_path: str, role: str, objective: str, max_length: int,
                 chat_template_kwargs: dict | None, history_format: str) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.role, self.objective, self.max_length = role, objective, max_length
        self.kwargs, self.history_format = chat_template_kwargs, history_format

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for r in batch.to_pylist():
            row = {"idx": r["idx"], "example_id": r["example_id"]}
            if self.objective == "sft":
                f = sft_features(self.tok, self.role, r["education"], r["history"], r["reason"], r["title"],
                                 self.max_length, self.kwargs, self.history_format)
                ids = {"input_ids": f.input_ids, "labels": f.labels} if f else {"input_ids": [], "labels": []}
                target = len(f.input_ids) - f.prompt_len if f else 0
                prompt = f.prompt_len if f else 0
            else:
                f = preference_features(self.tok, self.role, r["education"], r["history"], r["chosen"],
                                        r["rejected"], self.max_length, self.kwargs, self.history_format)
                ids = ({"prompt_ids": f.prompt_ids, "chosen_ids": f.chosen_ids, "rejected_ids": f.rejected_ids}
                       if f else {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []})
                target = max(len(f.chosen_ids), len(f.rejected_ids)) if f else 0
                prompt = len(f.prompt_ids) if f else 0
            out.append({**row, "fits": f is not None, "dropped_jobs": f.dropped_jobs if f else None,
                        "prompt_tokens": prompt, "target_tokens": target, **ids})
        return pa.Table.from_pylist(out, schema=TOKEN_SCHEMAS[self.objective])


class ReferenceLogps:
    """Ray Data actor (DPO): adds the frozen SFT model's summed completion log-probs of both sides
    (``ref_chosen_logps``, ``ref_rejected_logps``), computed once before training (TRL's
    ``precompute_ref_log_probs``): no reference model in the workers, and a resumed run reuses them."""

    def __init__(self, model_path: str, adapter_dir: str, dtype: str, threads: int | None, device: str) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, compute_dtype(dtype)))
        self.device = torch.device(device)
        adapter_dir = str(local_copy(location(adapter_dir)))  # on this actor's node
        self.model = PeftModel.from_pretrained(base, adapter_dir).to(self.device).eval()
        self.collate = Collator("dpo", AutoTokenizer.from_pretrained(model_path).pad_token_id)

    def __call__(self, batch: pa.Table) -> pa.Table:
        tensors = {k: v.to(self.device) for k, v in self.collate(batch.to_pylist()).items()}
        chosen, rejected = reference_logps(self.model, tensors)
        return (batch.append_column("ref_chosen_logps", pa.array(chosen, pa.float64()))
                .append_column("ref_rejected_logps", pa.array(rejected, pa.float64())))


def _fitting(batch: pa.Table) -> pa.Table:
    return batch.filter(batch.column("fits"))


def tokenize(table: pa.Table, role: str, objective: str, model_path: str, tcfg: TrainConfig,
             reference_adapter: str | None = None, history_format: str = "compact"):
    """(materialised Ray Dataset of fitting token rows, examples table with TRAIN_EXAMPLES_SCHEMA).

    Runs before the trainer starts, so the DPO reference actors can use the GPUs (one per training worker)
    that training will use next."""
    import ray


    ds = ray.data.from_arrow(table)
    ds.context.execution_options.preserve_order = True  # the same blocks, in the same order, every time
    ds = ds.map_batches(Tokenize, fn_constructor_kwargs={
        "model_path": model_path, "role": role, "objective": objective, "max_length": tcfg.max_length,
        "chat_template_kwargs": tcfg.chat_template_kwargs, "history_format": history_format}, batch_size=64, batch_format="pyarrow",
        num_cpus=_TOKENIZE_CPUS, compute=ray.data.ActorPoolStrategy(
            min_size=1, max_size=max(1, min(8, table.num_rows // 2000)))).materialize()
    meta = pa.concat_tables(ray.get(ds.select_columns([n for n, _ in _META]).to_arrow_refs()))
    examples = _examples_table(meta)
    ds = ds.map_batches(_fitting, batch_format="pyarrow", batch_size=None)
    if objective == "dpo":
        if reference_adapter is None:
            raise ValueError("DPO needs the SFT adapter as its reference model")
        gpu = tcfg.use_gpu
        ds = ds.map_batches(ReferenceLogps, fn_constructor_kwargs={
            "model_path": model_path, "adapter_dir": reference_adapter, "dtype": tcfg.dtype,
            "threads": threads_per_worker(tcfg), "device": "cuda" if gpu else "cpu"},
            batch_size=tcfg.dpo.batch_size or tcfg.batch_size, batch_format="pyarrow",
            num_cpus=1, num_gpus=1 if gpu else 0,
            compute=ray.data.ActorPoolStrategy(size=tcfg.num_workers if gpu else 1),
            runtime_env=worker_runtime_env(tcfg))
    return ds.materialize(), examples


def worker_runtime_env(tc: TrainConfig) -> dict:
    """The runtime_env of training workers and DPO reference actors: ``train.worker_niceness``
    (:func:`jobpred.ray_utils.niceness_env`)."""
    env = niceness_env(tc.worker_niceness)
    return {"env_vars": env} if env else {}


def threads_per_worker(tcfg: TrainConfig) -> int:
    return tcfg.threads_per_worker or max(1, int(tcfg.resources_per_worker.get("CPU", 1)))


def _examples_table(meta: pa.Table) -> pa.Table:
    frame = pl.from_arrow(meta).sort("idx").with_columns(
        used=pl.col("fits"), skip_reason=pl.when(pl.col("fits")).then(None).otherwise(pl.lit("too_long")))
    return frame.select(TRAIN_EXAMPLES_SCHEMA.names).to_arrow().cast(TRAIN_EXAMPLES_SCHEMA)


def write_examples(examples: pa.Table, path: Location) -> None:

    write_parquet_atomic(examples, path)


# ---- the order a worker visits its shard --------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    """How a worker's rows become optimiser steps (the same on every worker)."""

    rows_per_worker: int
    batch_size: int  # rows per micro-batch
    grad_accum: int  # micro-batches per optimiser step
    epochs: int
    max_steps: int | None
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.rows_per_worker / (self.batch_size * self.grad_accum))

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.epochs
        return min(total, self.max_steps) if self.max_steps else total


def epoch_order(n: int, seed: int, epoch: int, rank: int) -> np.ndarray:
    """The permutation of a worker's rows (sorted by idx) in one epoch."""
    return np.random.default_rng([seed, epoch, rank]).permutation(n)


def step_rows(rows: list[dict], step: int, plan: StepPlan, rank: int) -> list[list[dict]]:
    """The micro-batches of optimiser step ``step`` (0-based) on this worker: a pure function of the step."""
    epoch, k = divmod(step, plan.steps_per_epoch)
    order = epoch_order(len(rows), plan.seed, epoch, rank)
    per_step = plan.batch_size * plan.grad_accum
    picked = order[k * per_step:(k + 1) * per_step]
    return [[rows[i] for i in picked[j:j + plan.batch_size]] for j in range(0, len(picked), plan.batch_size)]


def read_shard(shard, rows_per_worker: int) -> list[dict]:
    """All rows of this worker's shard (a Ray Data iterator), sorted by idx."""
    rows = []
    for batch in shard.iter_batches(batch_size=256, batch_format="pyarrow"):
        rows.extend(batch.to_pylist())
    rows.sort(key=lambda r: r["idx"])
    if len(rows) < rows_per_worker:
        raise RuntimeError(f"this worker's shard has {len(rows)} rows, expected {rows_per_worker}")
    return rows[:rows_per_worker]
