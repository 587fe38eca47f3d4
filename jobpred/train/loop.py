"""The loop every Ray Train worker runs -- and the same loop in one plain process (benchmarks, debugging).

    TorchTrainer(train_loop, train_loop_config=spec, datasets={"train": ds}, ...)   # jobpred.train.trainer
    run_local(spec, rows)                                                          # no Ray, world of one

Optimiser step ``s`` (0-based; metrics call it ``step = s + 1``, so the last one equals ``total_steps``):
rows = :func:`jobpred.train.data.step_rows` -> micro-batches (TRL collators) -> loss
(:mod:`jobpred.train.objectives`) -> backward (DDP all-reduces the LoRA gradients on the last micro-batch
only) -> clip -> AdamW -> LR schedule (transformers' ``get_scheduler``). Dropout is seeded by
(seed, step, rank), so a step replayed after a restart is the same computation.

Checkpoints, every ``checkpoint_every`` steps and at the last one: rank 0 writes the adapter (peft
``save_pretrained``: ``adapter_config.json`` + ``adapter_model.safetensors``), ``optimizer.pt``,
``scheduler.pt``, ``state.json`` and ``metrics.jsonl`` (the curve so far) to a temporary directory and hands it to ``ray.train.report``; every
rank calls ``report`` (it is a barrier). A (re)started worker loads ``ray.train.get_checkpoint()`` -- the
latest one, after a worker failure (``FailureConfig``) or when the whole job is started again on the same
storage -- and continues at the step after it.

Metrics: rank 0 appends one JSON line per step to ``out_dir/metrics.jsonl`` (loss averaged over the
global batch, lr, tokens/s and examples/s over all workers, DPO reward accuracy and margin) and prints a
progress line every ``log_every`` steps; the same metrics go to ``ray.train.report``. A replayed step is
appended again; the curve is the last line of each step. The file is a log, not the record: the curve
that counts travels in the checkpoints, and the trainer mends the file from the final one. Each rank appends its pid, start step and a
digest of its shard to ``out_dir/workers/rank-<r>.jsonl`` when it starts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from jobpred.config import TrainConfig
from jobpred.models import compute_dtype
from jobpred.storage import local_copy, location, scratch_dir
from jobpred.train.data import StepPlan, read_shard, step_rows
from jobpred.train.objectives import Collator, dpo_loss, n_items, n_rows, n_tokens, sft_loss

_STATS = ("reward_accuracy", "reward_margin", "chosen_reward")  # DPO stats, summed per step then averaged
CURVE_FILE = "metrics.jsonl"  # in out_dir (appended per step) and in every checkpoint (the curve up to it)


def read_metrics(path: Path) -> list[dict]:
    """The JSON lines of a metrics file; a line cut short by a kill (or a missing file) is skipped, not fatal."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


# ---- where a loop runs: inside Ray Train, or in this process -------------------------------------------


class _RaySession:
    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()

    def rows(self, n: int) -> list[dict]:
        import ray.train

        return read_shard(ray.train.get_dataset_shard("train"), n)

    def checkpoint(self):
        import ray.train

        ckpt = ray.train.get_checkpoint()
        return ckpt.as_directory() if ckpt else contextlib.nullcontext(None)

    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare(self, model, tc: TrainConfig):
        import ray.train.torch

        if tc.strategy == "fsdp":
            return ray.train.torch.prepare_model(model, parallel_strategy="fsdp",
                                                 parallel_strategy_kwargs=_fsdp_kwargs(model))
        return ray.train.torch.prepare_model(model, parallel_strategy="ddp")

    def report(self, metrics: dict, ckpt_dir: str | None) -> None:
        import ray.train

        name = f"step-{metrics['step']:06d}" if ckpt_dir else None
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)


class _LocalSession:
    """World of one, no checkpoints: the plain single-process baseline."""

    rank, world = 0, 1

    def __init__(self, rows: list[dict]) -> None:
        self._rows = sorted(rows, key=lambda r: r["idx"])

    def rows(self, n: int) -> list[dict]:
        return self._rows[:n]

    def checkpoint(self):
        return contextlib.nullcontext(None)

    def device(self):
        import torch

        return torch.device("cpu")

    def prepare(self, model, tc: TrainConfig):
        return model

    def report(self, metrics: dict, ckpt_dir: str | None) -> None:
        pass


def train_loop(spec: dict) -> None:
    """Ray Train's per-worker entry point."""
    run_loop(spec, _RaySession())


def run_local(spec: dict, rows: list[dict]) -> dict:
    """The same loop in this process (no Ray, no DDP, no checkpoints); returns the last step's metrics."""
    return run_loop({**spec, "checkpoint": False}, _LocalSession(rows))


# ---- the loop -----------------------------------------------------------------------------------------


def run_loop(spec: dict, session) -> dict:
    import torch

    tc, plan, objective = TrainConfig.model_validate(spec["train"]), StepPlan(**spec["plan"]), spec["objective"]
    torch.set_num_threads(spec["threads"])
    # metrics.jsonl and workers/ are appended as the loop goes: in a bucket run they go to a node-local
    # scratch copy instead (the driver writes metrics.jsonl into the bucket from the final checkpoint's curve)
    rank, world, out = session.rank, session.world, scratch_dir(location(spec["out_dir"]))
    rows = session.rows(plan.rows_per_worker)
    model = build_model(spec, tc)
    start, states, history = 0, None, []
    with session.checkpoint() as ckpt_dir:
        if ckpt_dir:
            start, states = _load_checkpoint(model, Path(ckpt_dir))
            history = read_metrics(Path(ckpt_dir) / CURVE_FILE)
    device = session.device()
    model = session.prepare(model, tc)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=tc.weight_decay)
    sched = _scheduler(opt, tc, plan.total_steps)
    if states:
        opt.load_state_dict(_optimizer_state_to_load(model, opt, states["optimizer"], tc))
        sched.load_state_dict(states["scheduler"])
    _log_start(out, rank, world, start, rows)
    collate = Collator(objective, spec["pad_token_id"], packed=tc.packing and objective == "sft")
    last: dict = {}
    for s in range(start, plan.total_steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        torch.manual_seed(_step_seed(tc.seed, s, rank))  # dropout masks: a replayed step is the same step
        step_batches = step_rows(rows, s, plan, rank)
        micro = [{k: v.to(device) for k, v in collate(mb).items()} for mb in step_batches]
        items = _all_sum([sum(n_items(objective, b) for b in micro)], world, device)[0]
        lr = opt.param_groups[0]["lr"]
        loss_sum, stats = _forward_backward(model, micro, objective, items / world, spec["beta"])
        grad_norm = (torch.nn.utils.clip_grad_norm_(params, tc.max_grad_norm) if tc.max_grad_norm else None)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens = sum(n_tokens(b) for b in micro)
        rows_done = sum(n_rows(objective, b) for b in micro)
        cpu = time.process_time() - cpu_started  # all threads of this worker: what the step cost, whatever ran beside
        totals = _all_sum([loss_sum, tokens, rows_done, cpu, *stats.values()], world, device)
        seconds = _all_max(time.perf_counter() - started, world, device)
        last = {"step": s + 1, "total_steps": plan.total_steps, "epoch": round((s + 1) / plan.steps_per_epoch, 3),
                "loss": totals[0] / world, "lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else None,
                "tokens": int(totals[1]), "examples": int(totals[2]), "seconds": round(seconds, 4),
                "cpu_seconds": round(totals[3], 4),
                "tokens_per_s": round(totals[1] / seconds, 1), "examples_per_s": round(totals[2] / seconds, 3),
                "attempt_start_step": start, "rows_digest": _digest([r["idx"] for mb in step_batches for r in mb])}
        if objective == "dpo":
            last.update({k: v / items for k, v in zip(_STATS, totals[4:])})
        _log_step(out, rank, last, tc.log_every, spec["name"])
        history.append(last)
        is_ckpt = spec.get("checkpoint", True) and ((s + 1) % tc.checkpoint_every == 0 or s + 1 == plan.total_steps)
        if is_ckpt:
            with tempfile.TemporaryDirectory(prefix="jobpred-ckpt-") as tmp:
                _save_checkpoint(model, opt, sched, history, Path(tmp), rank, tc)
                session.report(last, tmp if rank == 0 else None)
        elif (s + 1) % tc.log_every == 0:
            session.report(last, None)
    return last


def _forward_backward(model, micro: list[dict], objective: str, items_per_worker: float, beta: float):
    """Loss and gradients of one optimiser step's micro-batches; (summed loss, summed DPO stats)."""
    loss_sum, stats = 0.0, dict.fromkeys(_STATS, 0.0)
    model.train()
    for i, batch in enumerate(micro):
        sync = i == len(micro) - 1 or unwrap(model) is model  # DDP/FSDP: all-reduce once per step
        with contextlib.nullcontext() if sync else model.no_sync():
            if objective == "sft":
                loss, extra = sft_loss(model, batch, items_per_worker)
            else:
                loss, extra = dpo_loss(model, batch, items_per_worker, beta)
            loss.backward()
        loss_sum += float(loss.detach())
        for k, v in extra.items():
            stats[k] += v
    return loss_sum, stats


def build_model(spec: dict, tc: TrainConfig):
    """The frozen base model with a trainable LoRA adapter: fresh (SFT) or the SFT adapter (DPO)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(spec["model_path"], dtype=getattr(torch, compute_dtype(tc.dtype)))
    if tc.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec.get("init_adapter"):
        init = str(local_copy(location(spec["init_adapter"])))  # on this worker's node
        model = PeftModel.from_pretrained(base, init, is_trainable=True)
    else:
        torch.manual_seed(tc.seed)  # the same LoRA init on every worker and in every attempt
        lora = LoraConfig(r=tc.lora.rank, lora_alpha=tc.lora.alpha, lora_dropout=tc.lora.dropout,
                          target_modules=tc.lora.target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(base, lora)  # LoRA weights in float32 even on a bf16 base (autocast_adapter_dtype)
    if spec["objective"] == "dpo":
        from trl.trainer.utils import disable_dropout_in_model

        disable_dropout_in_model(model)  # as TRL's DPO: the policy's log-probs are compared to the reference's
    return model


def _scheduler(opt, tc: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    name = "constant_with_warmup" if tc.lr_scheduler == "constant" else tc.lr_scheduler
    return get_scheduler(name, opt, num_warmup_steps=math.ceil(tc.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def _fsdp_kwargs(model) -> dict:
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    layers = {type(m) for m in model.modules() if type(m).__name__.endswith("DecoderLayer")}
    # use_orig_params: frozen base and trainable LoRA weights share the flat parameters of a layer
    return {"use_orig_params": True,
            "auto_wrap_policy": functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=layers)}


# ---- checkpoints --------------------------------------------------------------------------------------


def unwrap(model):
    """The peft model inside a DDP/FSDP wrapper."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel | FullyShardedDataParallel) else model


def _save_checkpoint(model, opt, sched, history: list[dict], path: Path, rank: int, tc: TrainConfig) -> None:
    """Every rank calls this (FSDP gathers collectively); rank 0 writes. ``history``: the metrics of every
    step so far -- the checkpoint carries the curve, so a lost or cut ``metrics.jsonl`` is rebuilt from it."""
    import torch

    state_dict, optim_state = None, opt.state_dict()
    if tc.strategy == "fsdp":
        from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType

        with FullyShardedDataParallel.state_dict_type(model, StateDictType.FULL_STATE_DICT,
                                                      FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
            state_dict = model.state_dict()
            optim_state = FullyShardedDataParallel.optim_state_dict(model, opt)
    if rank != 0:
        return
    unwrap(model).save_pretrained(path, state_dict=state_dict)  # adapter_config.json + adapter_model.safetensors
    torch.save(optim_state, path / "optimizer.pt")
    torch.save(sched.state_dict(), path / "scheduler.pt")
    (path / "state.json").write_text(json.dumps(history[-1], indent=2) + "\n")
    (path / CURVE_FILE).write_text("".join(json.dumps(row) + "\n" for row in history))


def _load_checkpoint(model, path: Path) -> tuple[int, dict]:
    """Load the adapter weights into ``model`` (before wrapping); (next step, optimizer/scheduler states)."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing:
        raise RuntimeError(f"checkpoint {path} lacks LoRA weights {missing[:3]}: written by another config?")
    step = json.loads((path / "state.json").read_text())["step"]
    states = {"optimizer": torch.load(path / "optimizer.pt", weights_only=False),
              "scheduler": torch.load(path / "scheduler.pt", weights_only=False)}
    return step, states


def _optimizer_state_to_load(model, opt, state: dict, tc: TrainConfig) -> dict:
    if tc.strategy != "fsdp":
        return state
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel.optim_state_dict_to_load(model, opt, state)


# ---- small helpers ------------------------------------------------------------------------------------


def _step_seed(seed: int, step: int, rank: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def _digest(values: list) -> str:
    return hashlib.blake2b(json.dumps(values).encode(), digest_size=6).hexdigest()


def _all_sum(values: list[float], world: int, device) -> list[float]:
    """Sum over workers (on ``device``: gloo on CPU tensors, NCCL on GPU tensors)."""
    if world == 1:
        return [float(v) for v in values]
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _all_max(value: float, world: int, device) -> float:
    if world == 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0])


def _log_start(out: Path, rank: int, world: int, start: int, rows: list[dict]) -> None:
    import torch

    line = {"pid": os.getpid(), "rank": rank, "world": world, "start_step": start, "rows": len(rows),
            "torch_threads": torch.get_num_threads(), "affinity": sorted(os.sched_getaffinity(0)),
            "shard_digest": _digest([r["idx"] for r in rows]), "at": time.time()}
    (out / "workers").mkdir(parents=True, exist_ok=True)
    with open(out / "workers" / f"rank-{rank}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def _log_step(out: Path, rank: int, metrics: dict, every: int, name: str) -> None:
    if rank != 0:
        return
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**metrics, "at": time.time()}) + "\n")
    if metrics["step"] % every == 0 or metrics["step"] == metrics["total_steps"]:
        print(f"train {name}: step {metrics['step']}/{metrics['total_steps']} loss {metrics['loss']:.4f} "
              f"lr {metrics['lr']:.3g} {metrics['tokens_per_s']} tokens/s {metrics['examples_per_s']} examples/s",
              file=sys.__stderr__, flush=True)  # the raw stream: Ray Train's print patch would log it twice
