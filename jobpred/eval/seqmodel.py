"""Supervised sequence baseline: a small GRU classifier over the 923 data-level O*NET occupations.

    ranked = train_and_rank(train_examples, test_examples, cfg.baselines.gru)   # list[str] per test row

Inputs per history job (most recent ``max_history`` jobs): occupation code, its Job Zone and its tenure
(log months); per person: the highest education level (O*NET RL scale, read from degree names). The
GRU's last state plus the education embedding is projected into the code-embedding space and scored
against the *same* embeddings (tied weights): "stays in the same occupation" and "moves to a similar
one" are then easy to learn from little data. Training uses every prefix of each train career (jobs
before position t -> job t), not only the final transition.

Trains in-process by default (torch imported here, never by ``import jobpred``); with
``use_ray_train: true`` the same loop runs as a Ray Train ``TorchTrainer`` over ``ray_train_workers``
CPU workers, each training on its shard under DDP (the data travels in the loop config: fine for the
sizes a baseline sees; a cluster-scale version would stream it with Ray Data).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from jobpred.config import SequenceModelConfig
from jobpred.taxonomy import Taxonomy

PAD, UNKNOWN = 0, 1  # code indices; occupation i is i + 2
_EDU_RULES = (  # (regex on the lower-cased degree name, O*NET RL level); first match wins
    (r"ph\.?d|doctor|^md$|^jd$|^dphil", 11),
    (r"master|^m\.?sc|^mba$|^ma$|^m\.?eng|^ms$", 8),
    (r"associate|^aa$|^as$|^aas$", 5),
    (r"bachelor|^b\.?sc|^ba$|^b\.?eng|^bs$", 6),
    (r"high school|^ged$", 2),
    (r"certificate|vocational|diploma", 3),
)
_TENURE_SCALE = math.log1p(240)  # 20 years -> 1.0


class NextOccupationGRU(nn.Module):
    def __init__(self, n_codes: int, embed: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.code = nn.Embedding(n_codes + 2, embed, padding_idx=PAD)
        self.zone = nn.Embedding(6, 8, padding_idx=0)  # Job Zone 1-5, 0 unknown
        self.edu = nn.Embedding(13, 8)  # RL 1-12, 0 unknown
        self.gru = nn.GRU(embed + 8 + 1, hidden, batch_first=True)
        self.head = nn.Linear(hidden + 8, embed)
        self.bias = nn.Parameter(torch.zeros(n_codes))
        self.drop = nn.Dropout(dropout)
        # Repeat-aware scores (people often return to an occupation they held): a learned logit bonus for
        # the last occupation and for any occupation in the window.
        self.copy_last = nn.Parameter(torch.tensor(1.0))
        self.copy_any = nn.Parameter(torch.tensor(0.0))

    def forward(self, codes, zones, tenure, edu, lengths):
        # codes, zones: (B, H) long, right-padded; tenure: (B, H) float; edu, lengths: (B,) long
        x = torch.cat([self.drop(self.code(codes)), self.zone(zones), tenure.unsqueeze(-1)], dim=-1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # h: (1, B, hidden)
        z = self.head(self.drop(torch.cat([h[0], self.edu(edu)], dim=-1)))  # (B, E)
        logits = z @ self.code.weight[2:].T + self.bias  # (B, n_codes)
        known = codes >= 2  # (B, H) real occupations (not pad / unknown)
        seen = torch.zeros_like(logits).scatter_(1, (codes - 2).clamp(min=0), known.float())  # (B, n_codes)
        last = codes.gather(1, (lengths - 1).unsqueeze(1))  # (B, 1)
        is_last = torch.zeros_like(logits).scatter_(1, (last - 2).clamp(min=0), (last >= 2).float())
        return logits + self.copy_any * seen + self.copy_last * is_last


# ---- features (polars/numpy; row-aligned with the examples) ------------------------------------------


def _month(col: str) -> pl.Expr:
    s = pl.col(col)
    return s.str.slice(0, 4).cast(pl.Int32, strict=False) * 12 + (
        s.str.slice(5, 2).cast(pl.Int32, strict=False).fill_null(1) - 1
    )


def _education_level() -> pl.Expr:
    degree = pl.element().struct.field("degree").str.to_lowercase()
    level = pl.lit(0)
    for pattern, value in reversed(_EDU_RULES):
        level = pl.when(degree.str.contains(pattern)).then(pl.lit(value)).otherwise(level)
    return pl.col("education").list.eval(level).list.max().fill_null(0).cast(pl.Int64)


def _jobs(examples: pl.DataFrame, with_target: bool) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Flat per-job arrays (code index, zone, tenure), per-person offsets (P+1,) and education (P,)."""
    tax = Taxonomy.load()
    index = pl.DataFrame({"onet_code": tax.data_level_codes,
                          "ci": np.arange(2, len(tax.data_level_codes) + 2)})
    zones = pl.DataFrame({"onet_code": list(tax.occupations),
                          "zone": [o.job_zone or 0 for o in tax.occupations.values()]})
    jobs = pl.col("history").list.eval(pl.struct(*[pl.element().struct.field(f).alias(f)
                                                   for f in ("onet_code", "start", "end")]))
    target = pl.struct(pl.col("target_code").alias("onet_code"), pl.col("target_start").alias("start"),
                       pl.lit(None, pl.String).alias("end"))
    seq = pl.concat_list(jobs, target) if with_target else jobs
    frame = examples.select(seq.alias("job"), _education_level().alias("edu")).with_row_index("p")
    flat = frame.select("p", "job").explode("job").drop_nulls("job").unnest("job")
    flat = (flat.with_columns(_month("start").alias("s"), _month("end").alias("e"))
            .with_columns(pl.coalesce("e", pl.col("s").shift(-1).over("p")).alias("e"))
            .join(index, on="onet_code", how="left", maintain_order="left")
            .join(zones, on="onet_code", how="left", maintain_order="left"))
    tenure = ((pl.col("e") - pl.col("s")).clip(0, 600).fill_null(0) + 1).log() / _TENURE_SCALE
    arrays = flat.select(
        pl.col("ci").fill_null(UNKNOWN).cast(pl.Int64), pl.col("zone").fill_null(0).cast(pl.Int64),
        tenure.cast(pl.Float32).alias("tenure"),
    )
    counts = np.bincount(flat["p"].to_numpy(), minlength=examples.height)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return {k: arrays[k].to_numpy() for k in arrays.columns}, offsets, frame["edu"].to_numpy()


def _windows(arrays, offsets, edu, person, end, max_history) -> dict[str, np.ndarray]:
    """Inputs for examples (person, end): jobs [end - H, end) of that person, right-padded to (E, H)."""
    start = np.maximum(offsets[person], end - max_history)  # (E,)
    lengths = end - start
    idx = start[:, None] + np.arange(max_history)[None, :]  # (E, H)
    valid = idx < end[:, None]
    idx = np.where(valid, idx, 0)
    out = {k: np.where(valid, v[idx], 0).astype(v.dtype) for k, v in arrays.items()}
    out["edu"] = edu[person]
    out["lengths"] = np.maximum(lengths, 1)  # an empty history is one padded step
    return out


def train_examples(examples: pl.DataFrame, max_history: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every prefix of every career -> (inputs, label index 0..922); unknown labels are dropped."""
    arrays, offsets, edu = _jobs(examples, with_target=True)
    person = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    end = np.arange(len(person))  # predict job `end` from the jobs before it
    keep = (end > offsets[person]) & (arrays["ci"] >= 2)
    inputs = _windows(arrays, offsets, edu, person[keep], end[keep], max_history)
    return inputs, arrays["ci"][keep] - 2


def eval_inputs(examples: pl.DataFrame, max_history: int) -> dict[str, np.ndarray]:
    arrays, offsets, edu = _jobs(examples, with_target=False)
    person = np.arange(len(offsets) - 1)
    return _windows(arrays, offsets, edu, person, offsets[1:], max_history)


# ---- training ----------------------------------------------------------------------------------------


def _batches(inputs: dict[str, np.ndarray], labels: np.ndarray | None, size: int, rng=None):
    n = len(inputs["lengths"])
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, size):
        sel = order[i:i + size]
        batch = {k: torch.from_numpy(v[sel]) for k, v in inputs.items()}
        yield batch, (torch.from_numpy(labels[sel]) if labels is not None else None)


def _forward(model, batch):
    return model(batch["ci"], batch["zone"], batch["tenure"], batch["edu"], batch["lengths"])


def train_loop(model: nn.Module, inputs, labels, cfg: SequenceModelConfig, report=None) -> list[float]:
    """Plain AdamW epochs; ``report(epoch, loss)`` is called after each (Ray Train reports through it)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    model.train()
    for epoch in range(cfg.epochs):
        total, seen = 0.0, 0
        for batch, y in _batches(inputs, labels, cfg.batch_size, rng):
            loss = nn.functional.cross_entropy(_forward(model, batch), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(y), seen + len(y)
        losses.append(total / max(seen, 1))
        if report is not None:
            report(epoch, losses[-1])
    return losses


def _ray_worker_loop(config: dict) -> None:
    """One Ray Train worker: its shard of the examples, DDP over CPU workers; rank 0 saves the weights."""
    import ray.train
    import ray.train.torch

    cfg, ctx = SequenceModelConfig(**config["cfg"]), ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.seed)
    model = ray.train.torch.prepare_model(_new_model(config["n_codes"], cfg))
    shard = {k: v[rank::world] for k, v in config["inputs"].items()}
    train_loop(model, shard, config["labels"][rank::world], cfg)
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            torch.save(module.state_dict(), Path(tmp) / "model.pt")
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({"done": 1}, checkpoint=checkpoint)


def _fit_ray(inputs, labels, n_codes: int, cfg: SequenceModelConfig, workers: int, storage: Path) -> nn.Module:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _ray_worker_loop,
        train_loop_config={"cfg": cfg.model_dump(), "inputs": inputs, "labels": labels, "n_codes": n_codes},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False),
        run_config=RunConfig(name="gru_baseline", storage_path=str(storage)),  # absolute (RunDir); s3:// too
    )
    result = trainer.fit()
    model = _new_model(n_codes, cfg)
    with result.checkpoint.as_directory() as path:
        model.load_state_dict(torch.load(Path(path) / "model.pt"))
    return model


def fit(train: pl.DataFrame, cfg: SequenceModelConfig, ray_workers: int | None = None,
        storage: Path | None = None) -> nn.Module:
    """Train on the train split in-process, or with Ray Train when ``ray_workers`` is set."""
    n_codes = len(Taxonomy.load().data_level_codes)
    inputs, labels = train_examples(train, cfg.max_history)
    if ray_workers and storage is not None:
        return _fit_ray(inputs, labels, n_codes, cfg, ray_workers, storage)
    if ray_workers:
        with tempfile.TemporaryDirectory() as tmp:
            return _fit_ray(inputs, labels, n_codes, cfg, ray_workers, Path(tmp))
    with _threads(cfg.threads):
        torch.manual_seed(cfg.seed)
        model = _new_model(n_codes, cfg)
        train_loop(model, inputs, labels, cfg)
    return model


def _new_model(n_codes: int, cfg: SequenceModelConfig) -> NextOccupationGRU:
    return NextOccupationGRU(n_codes, cfg.embed, cfg.hidden, cfg.dropout)


@contextlib.contextmanager
def _threads(n: int | None):
    """torch's intra-op threads set to ``n`` for the block (process-wide, so restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def rank(model: nn.Module, examples: pl.DataFrame, cfg: SequenceModelConfig, top_k: int = 10) -> pl.Series:
    """Top-``top_k`` codes (list[str], best first) for each example."""
    codes = np.array(Taxonomy.load().data_level_codes, dtype=object)
    model.eval()
    with _threads(cfg.threads):
        top = [_top(model, batch, top_k) for batch, _ in
               _batches(eval_inputs(examples, cfg.max_history), None, 4096)]
    idx = np.concatenate(top) if top else np.zeros((0, top_k), dtype=np.int64)
    return pl.Series("ranked", codes[idx].tolist(), dtype=pl.List(pl.String))


def _top(model: nn.Module, batch: dict, top_k: int) -> np.ndarray:
    return torch.topk(_forward(model, batch), top_k, dim=-1).indices.numpy()  # (B, k)
