"""The SFT step's loss on target logits only vs transformers' causal-LM loss over every position, interleaved.

Run as:
    python -m benchmarks.bench_sft_loss                    # ~3 minutes on a 2-core CPU
    python -m benchmarks.bench_sft_loss --rounds 12 --rows 16

One process, one model (the embedded default as `jobpred train` builds it: bf16 base, LoRA from the config),
the same joint rows as ``bench_train`` (synthetic histories with written reasons, ``--max-length`` cutoff).
Each round runs one forward + backward of the same micro-batch with each loss, in alternating order
(ABBA...), so a shared machine's drift -- which moves ``bench_train``'s separate runs by 2x here -- falls on
both alike. ``full`` is what ``sft_loss`` computed before (the model's own loss with ``labels``: logits
and a float32 log-softmax at every position); ``targets`` is :func:`jobpred.train.objectives.sft_loss`
(logits only where the next token is a target). Reports the median step time of each, their ratio, the
share of positions that are targets, the largest loss difference and the largest gradient difference
(relative to the gradient's largest entry): in float32 the two are identical; on a bf16 base the LM head's
bf16 matmuls round differently for different shapes, ~3% of the largest entry of a gradient here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import LoadAverage, bench_config, markdown_table, write_results


def _full_loss(model, batch: dict, items: float):
    import torch

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                use_cache=False, num_items_in_batch=torch.tensor(items))
    return out.loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (each runs both losses once)")
    parser.add_argument("--rows", type=int, default=8, help="oracle rows made (the micro-batches cycle over them)")
    parser.add_argument("--batch", type=int, default=2, help="sequences per micro-batch")
    parser.add_argument("--max-length", type=int, default=512, help="train.max_length (cutoff, tokens)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    import torch

    from benchmarks.bench_train import _oracle_run, joint_rows
    from jobpred.models import resolve_model
    from jobpred.train.loop import build_model
    from jobpred.train.objectives import Collator, n_items, sft_loss

    torch.set_num_threads(args.threads)
    cfg = bench_config([f"train.max_length={args.max_length}", f"train.max_examples={args.rows}"])
    path = resolve_model(cfg.model)
    with tempfile.TemporaryDirectory(prefix="bench-sft-loss-") as tmp:
        rows = joint_rows(cfg, _oracle_run(Path(tmp), args.rows))
    model = build_model({"model_path": path, "objective": "sft"}, cfg.train)
    model.train()
    collate = Collator("sft", model.config.pad_token_id or 0)
    batches = [collate(rows[i:i + args.batch]) for i in range(0, len(rows) - args.batch + 1, args.batch)]
    params = [p for p in model.parameters() if p.requires_grad]
    losses = {"full": _full_loss, "targets": lambda m, b, n: sft_loss(m, b, n)[0]}

    def step(name: str, batch: dict) -> tuple[float, float, list]:
        torch.manual_seed(0)  # the same dropout mask for both losses
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss = losses[name](model, batch, n_items("sft", batch))
        loss.backward()
        seconds = time.perf_counter() - start
        return seconds, float(loss.detach()), [p.grad.detach().clone() for p in params]

    times: dict[str, list[float]] = {"full": [], "targets": []}
    loss_diff = grad_diff = 0.0
    with LoadAverage() as load:
        step("full", batches[0])  # warm-up: first-call allocations and kernel selection
        step("targets", batches[0])
        for r in range(args.rounds):
            batch = batches[r % len(batches)]
            order = ("full", "targets") if r % 2 == 0 else ("targets", "full")
            results = {name: step(name, batch) for name in order}
            for name in order:
                times[name].append(results[name][0])
            a, b = results["full"], results["targets"]
            loss_diff = max(loss_diff, abs(a[1] - b[1]) / abs(a[1]))
            grad_diff = max(grad_diff, *(float((x - y).abs().max() / (x.abs().max() + 1e-12))
                                         for x, y in zip(a[2], b[2])))
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    targets = [int((b["labels"] != -100).sum()) for b in batches]
    table = [{"loss": name, "median_step_s": round(statistics.median(ts), 3),
              "tokens_per_s": round(statistics.mean(tokens) / statistics.median(ts), 1)} for name, ts in times.items()]
    speedup = round(statistics.median(times["full"]) / statistics.median(times["targets"]), 2)
    payload = {"args": vars(args), "rows": table, "speedup": speedup, "max_rel_loss_diff": loss_diff,
               "max_rel_grad_diff": round(grad_diff, 4), "dtype": cfg.train.dtype,
               "target_share": round(sum(targets) / sum(tokens), 3), "tokens_per_batch": statistics.mean(tokens),
               **load.summary()}
    path_out = write_results("sft_loss", payload)
    print(markdown_table(table))
    print(f"targets-only vs full: {speedup}x step time; target share {payload['target_share']}; "
          f"loss differs by {loss_diff:.1e}, gradients by {grad_diff:.3f} of their largest entry ({cfg.train.dtype}); "
          f"load {load.summary()}\n{path_out}")


if __name__ == "__main__":
    main()
