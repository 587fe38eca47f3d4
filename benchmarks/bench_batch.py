"""Generated tokens/s vs batch size: plain vLLM vs transformers ``generate``, same prompts and model.

Run as:
    python -m benchmarks.bench_batch                       # ~4 minutes on a 2-core CPU
    python -m benchmarks.bench_batch --sizes 1 8 32 --new-tokens 32

For each batch size B, both paths generate ``--new-tokens`` tokens (ignore EOS, greedy) for the same
candidate prompts of the reasons stage, B prompts at a time: vLLM gets B prompts per ``LLM.chat`` call (one
engine for all sizes: its scheduler then runs at most B sequences), transformers one padded batch of B.
The ratio vLLM / transformers at each B is the figure to read; the curve shows where batching pays on
this CPU (and on a GPU the same script shows it much more steeply).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import bench_config, machine, markdown_table, run_child, write_results


def _prompts(workdir: Path, n: int) -> list:
    from benchmarks.bench_reasons import _prompts as reasons_prompts

    return reasons_prompts(workdir, n, 0)["candidates"]


def _plan(sizes: list[int], min_prompts: int) -> dict[int, int]:
    """Prompts per batch size: at least two batches and at least ``min_prompts`` prompts."""
    return {b: max(2 * b, min_prompts - min_prompts % b if min_prompts >= b else b) for b in sizes}


def _vllm(prompts: list, plan: dict[int, int], new_tokens: int) -> dict:
    teacher = bench_config().reasons.teacher
    os.environ.update(teacher.env)
    from vllm import LLM, SamplingParams

    from jobpred.llm.engine import vllm_engine_kwargs
    from jobpred.models import resolve_model

    llm = LLM(model=resolve_model(teacher.model), dtype=vllm_engine_kwargs(teacher)["dtype"], max_model_len=teacher.max_model_len,
              **teacher.engine_kwargs)
    chat = {"add_generation_prompt": False, "continue_final_message": True, "use_tqdm": False}
    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True)
    llm.chat(prompts[:4], SamplingParams(max_tokens=4), **chat)  # warm-up
    out = {}
    for b, n in plan.items():
        t, tokens = time.perf_counter(), 0
        for i in range(0, n, b):
            tokens += sum(len(o.outputs[0].token_ids) for o in llm.chat(prompts[i:i + b], params, **chat))
        out[b] = {"tokens": tokens, "seconds": round(time.perf_counter() - t, 2)}
    return out


def _hf(prompts: list, plan: dict[int, int], new_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobpred.models import compute_dtype, resolve_model

    torch.set_num_threads(os.cpu_count())
    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, compute_dtype("auto"))).eval()
    texts = [tok.apply_chat_template(m, tokenize=False, continue_final_message=True) for m in prompts]
    out = {}
    with torch.inference_mode():
        enc = tok(texts[:2], return_tensors="pt", padding=True, add_special_tokens=False)
        model.generate(**enc, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id)  # warm-up
        for b, n in plan.items():
            t, tokens = time.perf_counter(), 0
            for i in range(0, n, b):
                enc = tok(texts[i:i + b], return_tensors="pt", padding=True, add_special_tokens=False)
                gen = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
                tokens += (gen.shape[1] - enc["input_ids"].shape[1]) * gen.shape[0]
            out[b] = {"tokens": int(tokens), "seconds": round(time.perf_counter() - t, 2)}
    return out


def _run_child(kind: str, prompts_path: Path, argv: list[str]) -> dict:
    result, load = run_child("benchmarks.bench_batch", ["--child", kind, "--prompts-file", str(prompts_path), *argv])
    return {"by_size": {int(k): val for k, val in result.items()}, **load}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    from jobpred.models import compute_dtype

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("vllm_tokens_per_s", "vLLM LLM.chat"), ("hf_tokens_per_s", "transformers generate")):
        ax.plot([r["batch_size"] for r in rows], [r[key] for r in rows], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (sequences generated together)")
    ax.set_ylabel("generated tokens/s")
    ax.set_title(f"tokens/s vs batch size, SmolLM2-135M {compute_dtype('auto')} ({machine()['cores']} CPU cores)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--min-prompts", type=int, default=16, help="prompts per size (at least two batches)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    plan = _plan(args.sizes, args.min_prompts)
    if args.child:
        prompts = json.loads(args.prompts_file.read_text())
        fn = _vllm if args.child == "vllm" else _hf
        print("RESULT " + json.dumps(fn(prompts, plan, args.new_tokens)), flush=True)
        return
    argv = ["--sizes", *map(str, args.sizes), "--min-prompts", str(args.min_prompts), "--new-tokens",
            str(args.new_tokens)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompts.json"
        path.write_text(json.dumps(_prompts(Path(tmp), max(plan.values()))))
        res = {kind: _run_child(kind, path, argv) for kind in ("vllm", "hf")}
    rows = []
    for b in args.sizes:
        v, h = res["vllm"]["by_size"][b], res["hf"]["by_size"][b]
        vt, ht = v["tokens"] / v["seconds"], h["tokens"] / h["seconds"]
        rows.append({"batch_size": b, "prompts": plan[b], "vllm_tokens_per_s": round(vt, 1),
                     "hf_tokens_per_s": round(ht, 1), "vllm_vs_transformers": round(vt / ht, 2)})
    print(f"machine: {machine()}")
    print(markdown_table(rows))
    out = write_results("batch", {"args": vars(args) | {"prompts_file": None}, "rows": rows,
                                  "load": {k: {m: res[k][m] for m in ("load_mean", "load_max")} for k in res}})
    plot(rows, out.with_suffix(".png"))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
