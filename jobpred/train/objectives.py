"""The two training objectives on a batch of token rows: SFT (target-only cross-entropy) and DPO (sigmoid).

    collate = Collator("sft", pad_token_id)          # TRL's collators: dynamic right padding
    batch = collate(rows)
    loss_sum, stats = sft_loss(model, batch, n_items)   # n_items: this worker's share of the step's targets

Both losses are normalised so that DDP's gradient *average* over workers (and the sum over gradient-
accumulation micro-batches) gives the exact mean of the whole global batch: SFT divides the summed token
losses by (target tokens of the global step / world size), DPO the summed pair losses by (pairs / world).
Padding (TRL's ``DataCollatorForLanguageModeling`` / ``DataCollatorForPreference``) and log-probabilities
(TRL's ``selective_log_softmax``) are TRL's. Both compute logits only at the positions that predict a
target token (transformers' ``logits_to_keep`` with an index tensor), never over the whole prompt.

torch and TRL are imported inside the functions: this module is shipped to Ray workers. The TRL names used
are TRL internals, all behind :func:`_trl` (see the section "TRL internals").
"""

from __future__ import annotations

import importlib

OBJECTIVES = ("sft", "dpo")


# ---- TRL internals ---------------------------------------------------------------------------------------
# The only place this module touches TRL. TRL (1.16.0 in requirements/cpu.txt) does not export these from its
# top-level package: they live in its trainer modules and may move or change in any release. On a TRL
# upgrade check that each still imports from the module named here and still behaves as used below: the
# SFT collator right-pads input_ids/labels (labels -100 on padding) with an attention_mask; the preference
# collator concatenates prompt+chosen and prompt+rejected rows (all chosen first) into input_ids,
# attention_mask and completion_mask and passes ref_*_logps through; selective_log_softmax(logits, ids)
# gathers log p(id) per position. tests/test_train_formats.py (the losses) and the DPO training tests use them.
_TRL_INTERNALS = {
    "DataCollatorForLanguageModeling": "trl.trainer.sft_trainer",
    "DataCollatorForPreference": "trl.trainer.dpo_trainer",
    "selective_log_softmax": "trl.trainer.utils",
}


def _trl(name: str):
    """One of :data:`_TRL_INTERNALS`, imported on first use (this module is shipped to Ray workers)."""
    return getattr(importlib.import_module(_TRL_INTERNALS[name]), name)


class Collator:
    """Rows (dicts of token-id lists) -> padded tensors, with TRL's collator for the objective. ``packed``
    (SFT only): the rows concatenated into one, with position ids restarting at each row and no attention
    mask; transformers then keeps attention within each row (a block-diagonal mask from the position ids)."""

    # what the model and losses read; TRL's padding-free output also carries flash-attention metadata
    OUTPUTS = ("input_ids", "labels", "attention_mask", "position_ids", "completion_mask", "ref_chosen_logps",
               "ref_rejected_logps")

    def __init__(self, objective: str, pad_token_id: int, packed: bool = False) -> None:
        if objective == "sft":
            self.collate = _trl("DataCollatorForLanguageModeling")(pad_token_id=pad_token_id, padding_free=packed)
            self.keys = ("input_ids", "labels")
        elif objective == "dpo" and not packed:
            self.collate = _trl("DataCollatorForPreference")(pad_token_id=pad_token_id)
            self.keys = ("prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps")
        elif objective == "dpo":
            raise ValueError("packing is implemented for SFT only")
        else:
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")

    def __call__(self, rows: list[dict]) -> dict:
        out = self.collate([{k: r[k] for k in self.keys if k in r} for r in rows])
        return {k: v for k, v in out.items() if k in self.OUTPUTS}


def n_items(objective: str, batch: dict) -> int:
    """What the objective averages over: target tokens (SFT) or preference pairs (DPO)."""
    if objective == "sft":
        return int((batch["labels"] != -100).sum())
    return int(batch["input_ids"].shape[0] // 2)


def n_tokens(batch: dict) -> int:
    """Real (non-padding) tokens in the batch: the throughput unit."""
    if "attention_mask" not in batch:  # packed: one row, no padding
        return int(batch["input_ids"].numel())
    return int(batch["attention_mask"].sum())


def n_rows(objective: str, batch: dict) -> int:
    """Training rows in the batch: sequences (SFT, packed or not) or preference pairs (DPO)."""
    if "position_ids" in batch and "attention_mask" not in batch:  # packed: a row starts at position 0
        return int((batch["position_ids"] == 0).sum())
    return int(batch["input_ids"].shape[0]) // (2 if objective == "dpo" else 1)


def _target_positions(mask):
    """Sequence positions whose *next* token is a target in some row: (B, T) bool mask of target tokens ->
    1-D indices into positions 0..T-2. Only these positions need logits."""
    return mask[:, 1:].any(dim=0).nonzero().squeeze(1)


def sft_loss(model, batch: dict, items_per_worker: float):
    """Summed cross-entropy of the target tokens / ``items_per_worker`` (what transformers' causal-LM loss
    computes with ``num_items_in_batch``), with logits computed only where the next token is a target
    (``logits_to_keep``): the 49k-word LM head and its float32 softmax over every prompt position were a
    large share of the step's FLOPs and of its activation memory, for positions whose loss is ignored."""
    import torch.nn.functional as F

    labels = batch["labels"]
    keep = _target_positions(labels != -100)  # (K,)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                   position_ids=batch.get("position_ids"), use_cache=False, logits_to_keep=keep).logits  # (B, K, V)
    targets = labels[:, keep + 1]  # (B, K): the token each kept position predicts (-100 where not a target)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")
    return loss / items_per_worker, {}


def sequence_logps(model, input_ids, attention_mask, completion_mask):
    """Sum of log p(token) over the completion tokens of each row: (B, T) -> (B,); logits only where the
    next token is a completion token (see :func:`sft_loss`)."""
    selective_log_softmax = _trl("selective_log_softmax")
    keep = _target_positions(completion_mask.bool())  # (K,)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                   logits_to_keep=keep).logits  # (B, K, V)
    # float32: summed over a completion, bf16 log-probs (8 bits of mantissa) would round the policy and the
    # reference to the same value and the DPO margin to 0
    per_token = selective_log_softmax(logits.float(), input_ids[:, keep + 1])  # (B, K): log p(x_t+1 | x_<=t)
    return (per_token * completion_mask[:, keep + 1]).sum(dim=1)


def dpo_loss(model, batch: dict, items_per_worker: float, beta: float):
    """Sigmoid DPO (Rafailov et al. 2023; TRL's ``loss_type='sigmoid'``) against precomputed reference
    log-probs: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), summed / ``items_per_worker``."""
    import torch.nn.functional as F

    logps = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    chosen, rejected = logps.chunk(2)  # the collator puts all chosen rows first, then all rejected rows
    chosen_ratio = chosen - batch["ref_chosen_logps"].to(chosen.dtype)
    rejected_ratio = rejected - batch["ref_rejected_logps"].to(rejected.dtype)
    margin = beta * (chosen_ratio - rejected_ratio)  # (B,)
    loss = -F.logsigmoid(margin).sum() / items_per_worker
    stats = {"reward_accuracy": float((margin > 0).float().sum()), "reward_margin": float(margin.detach().sum()),
             "chosen_reward": float(beta * chosen_ratio.detach().sum())}
    return loss, stats  # stats are sums over pairs; the loop turns them into means over the global step


def reference_logps(model, batch: dict) -> tuple[list[float], list[float]]:
    """(chosen, rejected) summed completion log-probs of the frozen reference model (no grad)."""
    import torch

    with torch.no_grad():
        logps = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    chosen, rejected = logps.float().chunk(2)
    return chosen.tolist(), rejected.tolist()
