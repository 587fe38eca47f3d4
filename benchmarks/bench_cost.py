"""The cost model of one `jobpred run`: where the time goes, per stage, read from the run directory itself.

Run as:
    python -m benchmarks.bench_cost --config configs/smoke.yaml      # runs the job on a fresh directory, then reads it
    python -m benchmarks.bench_cost --run runs/local                 # reads a finished run (e.g. after `make demo`)
    python -m benchmarks.bench_cost                                  # runs/local if `make demo` ran, else the smoke run
    python -m benchmarks.bench_cost --run OLD/runs/local runs/local-full   # finished runs side by side, ratios vs the first

Per stage: wall seconds (the manifest's `run` record). Per LLM stage (teacher candidates, judge, prediction):
rows, prompt and generated tokens per row, rows per second over the stage's wall time and over the engine's
own time (``llm_seconds``; the gap is engine start-up, the first passes over new batch shapes and Ray Data
scheduling), and vLLM engine starts. Training: tokens per second per adapter at steady state. With
``--config`` the job runs under a peak-memory sampler (PSS of the whole process tree, Ray workers included).
Several ``--run`` directories print side by side (:func:`compare`): each stage's examples per second end to
end (reasons: examples planned; evaluate: LLM predictions, examples x predictors), rows per second of each
LLM stage, engine starts and training tokens per second, with each run's ratio to the first. Comparing two
settings means two runs side by side, on the same machine and load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

from benchmarks.common import REPO, LoadAverage, PeakMemory, Timer, machine, markdown_table, write_results


def _llm_row(stage: str, frame: pl.DataFrame, wall_s: float | None, engines: int | None) -> dict:
    rows = frame.height
    engine_s = float(frame["llm_seconds"].sum()) if "llm_seconds" in frame.columns else None
    return {
        "stage": stage, "rows": rows,
        "prompt_tokens_per_row": round(float(frame["prompt_tokens"].mean() or 0), 1),
        "generated_tokens_per_row": round(float(frame["generated_tokens"].mean() or 0), 1),
        "wall_s": wall_s, "rows_per_s": round(rows / wall_s, 3) if wall_s else None,
        "engine_s": round(engine_s, 1) if engine_s is not None else None,
        "engine_starts": engines,
    }


def cost_model(run_dir: Path) -> dict:
    """The numbers of one finished run directory (see the module docstring)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stages = manifest["stages"]
    seconds = {name: rec.get("seconds") for name, rec in stages.get("run", {}).get("stages", {}).items()}
    rows = []
    reasons = stages.get("reasons", {})
    if reasons:
        this = reasons.get("this_run", {})  # a stage's extra entries sit beside its counts in the manifest
        timings = this.get("timings", {})
        cands = pl.read_parquet(run_dir / "reasons" / "candidates" / "**" / "*.parquet")
        judged = pl.read_parquet(run_dir / "reasons" / "judgements" / "**" / "*.parquet")
        engines = this.get("engine_starts", {})
        rows.append(_llm_row("reasons: teacher", cands, timings.get("candidates_s"), engines.get("candidates")))
        rows.append(_llm_row("reasons: judge", judged, timings.get("judge_s"), engines.get("judge")))
    predict = stages.get("predict", {})
    if predict.get("outputs"):
        tables = [pl.read_parquet(run_dir / rel).select("prompt_tokens", "generated_tokens")
                  for rel in predict["outputs"].values()]
        counts = predict.get("counts", {})
        rows.append(_llm_row("evaluate: LLM predictors", pl.concat(tables), counts.get("seconds"),
                             counts.get("predict_engine_starts")))
    training = [{"adapter": name, "tokens_per_s": info.get("metrics", {}).get("tokens_per_s"),
                 "steps": info.get("metrics", {}).get("steps"), "train_s": info.get("timings", {}).get("total_s")}
                for name, info in stages.get("train", {}).get("adapters", {}).items()]
    counts = predict.get("counts", {})
    judge_at_predict = (counts.get("engine_starts") or 0) - (counts.get("predict_engine_starts") or 0)
    return {"run_dir": str(run_dir), "stage_seconds": seconds, "llm_stages": rows, "training": training,
            "reasons_examples": reasons.get("counts", {}).get("planned"),
            "engine_starts": sum(r["engine_starts"] or 0 for r in rows) + judge_at_predict}


def _throughputs(model: dict) -> dict[str, float | None]:
    """The figures :func:`compare` puts side by side, of one :func:`cost_model`."""
    seconds = model["stage_seconds"]
    stages = {r["stage"]: r for r in model["llm_stages"]}
    predict = stages.get("evaluate: LLM predictors")
    tokens = [t["tokens_per_s"] for t in model["training"] if t["tokens_per_s"]]
    out = {
        "reasons: examples/s end to end": (model["reasons_examples"] / seconds["reasons"]
                                           if model.get("reasons_examples") and seconds.get("reasons") else None),
        "evaluate: LLM predictions/s end to end": (predict["rows"] / seconds["evaluate"]
                                                   if predict and seconds.get("evaluate") else None),
        "train: mean tokens/s per adapter": sum(tokens) / len(tokens) if tokens else None,
        "engine starts per run": model["engine_starts"],
    }
    for name, row in stages.items():
        out[f"{name}: rows/s over the stage"] = row["rows_per_s"]
    return out


def compare(models: list[dict]) -> list[dict]:
    """One row per figure of :func:`_throughputs`: each run's value and its ratio to the first run's."""
    figures = [_throughputs(m) for m in models]
    rows = []
    for key in dict.fromkeys(k for f in figures for k in f):
        values = [f.get(key) for f in figures]
        row = {"figure": key}
        for i, v in enumerate(values):
            row[f"run {i + 1}"] = round(v, 3) if isinstance(v, float) else v
            if i:
                row[f"run {i + 1} / run 1"] = round(v / values[0], 2) if v is not None and values[0] else None
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", help="run `jobpred run` with this preset on a fresh run directory, then read it")
    group.add_argument("--run", nargs="+", help="read these finished run directories (several: side by side)")
    args = parser.parse_args()
    if not args.config and not args.run:
        demo = REPO / "runs" / "local"
        args.run, args.config = ([str(demo)], None) if (demo / "manifest.json").exists() else (None, "configs/smoke.yaml")

    extra: dict = {}
    if args.config:
        with tempfile.TemporaryDirectory(prefix="jobpred-cost-") as tmp:
            run_dir = Path(tmp) / "run"
            with PeakMemory() as peak, LoadAverage() as load, Timer() as timer:
                subprocess.run([sys.executable, "-m", "jobpred.cli", "run", "--config", args.config, "--run",
                                str(run_dir), "--quiet"], check=True, cwd=REPO)
            extra = {"config": args.config, "job_s": round(timer.seconds, 1), "peak_memory_gb": peak.peak_gb,
                     **load.summary()}
            model = cost_model(run_dir)
    elif len(args.run) > 1:
        models = [cost_model(Path(r).resolve()) for r in args.run]
        table = compare(models)
        print(f"machine: {machine()}")
        for i, m in enumerate(models):
            print(f"run {i + 1}: {m['run_dir']}")
        print(markdown_table(table))
        print(f"results: {write_results('cost', {'runs': models, 'comparison': table})}")
        return
    else:
        model = cost_model(Path(args.run[0]).resolve())
    result = {**model, **extra}
    print(f"machine: {machine()}")
    if extra:
        print(f"job {extra['job_s']} s, peak memory {extra['peak_memory_gb']} GB, load {extra['load_mean']}")
    print(markdown_table([{"stage": k, "seconds": v} for k, v in model["stage_seconds"].items()]))
    if model["llm_stages"]:
        print(markdown_table(model["llm_stages"]))
    if model["training"]:
        print(markdown_table(model["training"]))
    print(f"results: {write_results('cost', result)}")


if __name__ == "__main__":
    main()
