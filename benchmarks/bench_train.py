"""LoRA training throughput: Ray Train (1 and 2 workers) vs a plain single-process loop, same data and model.

Run as:
    python -m benchmarks.bench_train                 # ~6 minutes on a 2-core CPU
    python -m benchmarks.bench_train --steps 8 --rows 16
    python -m benchmarks.bench_train --before HEAD~1 --only plain    # a change's effect: the step code at a git
                                                                     # ref beside the working tree, interleaved

Same model (the embedded default, bf16 base, LoRA r=8 on q/k/v/o), same joint-format rows (synthetic
histories with hand-written oracle reasons, cut to ``--max-length`` tokens by the training cutoff rule),
same batch size per worker, each measurement in a fresh subprocess, one after the other:
- ``plain``: :func:`jobpred.train.loop.run_local` -- the same step code in this process, no Ray, no DDP,
  2 torch threads;
- ``ray-1``: ``jobpred.train`` on Ray Train, 1 worker with 2 CPUs (2 threads), Ray Data shard, checkpoints;
- ``ray-2``: 2 workers with 1 CPU each (1 thread each), DDP over gloo: twice the rows per step.
``plain`` runs first and again last, and ``vs_plain`` divides by the mean of the two, to bracket the drift
of a shared machine. ``--before REF`` runs each variant first with the ``jobpred`` package of git ``REF``
(``git archive``, in a temporary directory the child starts in) and then with the working tree's: a
change's before and after side by side in one run, with ``vs_before`` and whether the two loss curves agree. Throughput is the steady state (steps 2..N, from each run's metrics.jsonl: real tokens of prompt + target,
forward + backward + optimiser); wall time includes Ray start, tokenising and worker start-up. Target:
ray-1 >= 0.9x plain. ``tokens_per_cpu_s`` divides by the CPU time of the training process(es)
instead of wall time: on a machine shared with other jobs it compares the code paths without the
neighbours' load. Peak memory is the PSS of the process tree (driver, Ray, workers).
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

from benchmarks.common import REPO, LoadAverage, PeakMemory, bench_config, markdown_table, write_results

VARIANTS = {"plain": {}, "ray-1": {"workers": 1, "cpus": 2}, "ray-2": {"workers": 2, "cpus": 1},
            # the plain loop with one sequence per step (the CPU presets' batch), and with the --batch sequences
            # packed into one row (train.packing: no padding)
            "plain-b1": {"batch": 1}, "plain-packed": {"packing": True}}


def _oracle_run(root: Path, rows: int) -> Path:
    """A prepared synthetic run with ``rows`` oracle reasons (written directly, schema ORACLE_SCHEMA)."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobpred.config import PrepareConfig, SynthConfig
    from jobpred.data.prepare import prepare
    from jobpred.data.synth import write_synthetic
    from jobpred.rundir import RunDir
    from jobpred.schema import ORACLE_SCHEMA

    write_synthetic(SynthConfig(persons=rows * 2 + 20, seed=21), root / "p.jsonl", progress=False)
    run = root / "run"
    prepare(root / "p.jsonl", run, PrepareConfig(engine="local"))
    examples = pl.read_parquet(run / "examples" / "train.parquet").head(rows)
    oracle = []
    for ex in examples.iter_rows(named=True):
        jobs = " then ".join(j["onet_title"] or j["title"] for j in ex["history"])
        reason = (f"The person worked as {jobs}. Each move kept the same field and added responsibility, so "
                  "the next step is a related role one level up, in the same sector.")
        oracle.append(dict.fromkeys(ORACLE_SCHEMA.names) | {
            "example_id": ex["example_id"], "reason": reason, "target_title": ex["target_title"],
            "target_code": ex["target_code"], "answer": ex["target_title"]})
    (run / "reasons").mkdir()
    pq.write_table(pa.Table.from_pylist(oracle, schema=ORACLE_SCHEMA), run / "reasons" / "oracle.parquet")
    RunDir(run).record_stage("reasons", outputs={"oracle": "reasons/oracle.parquet"})
    return run


def joint_rows(cfg, run: Path) -> list[dict]:
    """The joint SFT token rows of a run's oracle table that fit ``train.max_length`` (the training cutoff
    rule), tokenised as `jobpred train` does; ``bench_sft_loss`` uses the same rows."""
    from jobpred.models import resolve_model
    from jobpred.train.data import Tokenize, sft_table

    tokens = Tokenize(resolve_model(cfg.model), "joint", "sft", cfg.train.max_length, None, cfg.history_format)(
        sft_table(run, "joint", cfg.train))
    return [r for r in tokens.to_pylist() if r["fits"]]


def _package_at(ref: str, root: Path) -> Path:
    """A directory to start a child in whose ``jobpred`` is the package at git ``ref`` and whose
    ``benchmarks`` is this one (``python -m`` puts the start directory first on ``sys.path``)."""
    tree, shim = root / "tree", root / "shim"
    tree.mkdir()
    shim.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "jobpred"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    (shim / "jobpred").symlink_to(tree / "jobpred")
    (shim / "benchmarks").symlink_to(REPO / "benchmarks")
    return shim


def _config(args, variant: str):
    v = VARIANTS[variant]
    return bench_config([
        f"train.max_length={args.max_length}", f"train.batch_size={v.get('batch', args.batch)}",
        f"train.packing={v.get('packing', False)}", f"train.max_steps={args.steps}",
        "train.epochs=100", f"train.checkpoint_every={args.steps}", f"train.max_examples={args.rows}",
        f"train.num_workers={v.get('workers', 1)}", f"train.resources_per_worker={{CPU: {v.get('cpus', 2)}}}",
        "train.threads_per_worker=null", f"ray.num_cpus={args.ray_cpus}"])


def child(args) -> dict:
    """One measurement (runs in its own process)."""
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        return _measure(args, Path(tmp))


def _measure(args, work: Path) -> dict:
    import jobpred
    from jobpred.train.trainer import AdapterJob, build_spec, read_curve

    run = _oracle_run(work, args.rows)
    cfg = _config(args, args.child)
    started = time.perf_counter()
    if args.child.startswith("plain"):
        from jobpred.models import resolve_model
        from jobpred.train.data import StepPlan
        from jobpred.train.loop import run_local

        path = resolve_model(cfg.model)
        rows = joint_rows(cfg, run)
        plan = StepPlan(len(rows), cfg.train.batch_size, 1, cfg.train.epochs, cfg.train.max_steps, cfg.train.seed)
        out = work / "plain"
        out.mkdir()
        run_local(build_spec(cfg, AdapterJob("joint", "joint", "sft"), path, None, plan, out), rows)
    else:
        from jobpred.train import run as train_run

        train_run(cfg, run, mode="joint", dpo=False)
        out = run / "train" / "joint"
    wall = time.perf_counter() - started
    curve = read_curve(out / "metrics.jsonl")
    steady = curve[1:]
    return {"variant": args.child, "steps": len(curve), "rows_per_step": max(r["examples"] for r in curve),
            "tokens_per_s": round(sum(r["tokens"] for r in steady) / sum(r["seconds"] for r in steady), 1),
            "examples_per_s": round(sum(r["examples"] for r in steady) / sum(r["seconds"] for r in steady), 3),
            "tokens_per_cpu_s": round(sum(r["tokens"] for r in steady) / sum(r["cpu_seconds"] for r in steady), 1),
            "step_s": round(sum(r["seconds"] for r in steady) / len(steady), 2), "wall_s": round(wall, 1),
            "losses": [round(r["loss"], 5) for r in curve], "jobpred": str(Path(jobpred.__file__).resolve())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per variant (the first is warm-up)")
    parser.add_argument("--rows", type=int, default=24, help="oracle rows in the training table")
    parser.add_argument("--batch", type=int, default=2, help="sequences per worker per step")
    parser.add_argument("--max-length", type=int, default=512, help="train.max_length (cutoff, tokens)")
    parser.add_argument("--ray-cpus", type=int, default=3, help="logical CPUs of the local Ray")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=["plain", "ray-1", "ray-2", "plain"],
                        help="variants, in order (default: plain, ray-1, ray-2, plain again to bracket the noise; "
                             "plain-b1 and plain-packed: the plain loop at 1 sequence per step and with packing)")
    parser.add_argument("--before", metavar="REF",
                        help="also run each variant with the jobpred of this git ref, just before the working tree's")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-ref-") as tmp:
        before = _package_at(args.before, Path(tmp)) if args.before else None
        runs = [(v, at) for v in args.only for at in ((before, None) if before else (None,))]
        for variant, start_dir in runs:
            cmd = [sys.executable, "-m", "benchmarks.bench_train", "--child", variant, "--steps", str(args.steps),
                   "--rows", str(args.rows), "--batch", str(args.batch), "--max-length", str(args.max_length),
                   "--ray-cpus", str(args.ray_cpus)]
            with PeakMemory(interval=0.5) as mem, LoadAverage() as load:
                # PYTHONPATH too: Ray Train's workers inherit the environment, not the start directory
                env = {**os.environ, "PYTHONPATH": str(start_dir)} if start_dir else None
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=start_dir, env=env)
            label = f"{variant}@{args.before}" if start_dir else variant
            if out.returncode != 0:
                raise RuntimeError(f"{label} failed: {out.stderr[-3000:]}")
            result = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])
            if (start_dir is not None) != result.pop("jobpred").startswith(tmp):  # measured the wrong code
                raise RuntimeError(f"{label} did not run the jobpred it was meant to")
            rows.append({**result, "variant": label, "peak_pss_gb": mem.peak_gb, **load.summary()})
            print(json.dumps(rows[-1]), flush=True)
    if before:  # each variant against its own run at the ref just before it (the ref's rows: blank)
        for prev, row in zip(rows[::2], rows[1::2], strict=True):
            prev.update(vs_before=None, vs_before_cpu=None, same_losses_as_before=None)
            row["vs_before"] = round(row["tokens_per_s"] / prev["tokens_per_s"], 2)
            row["vs_before_cpu"] = round(row["tokens_per_cpu_s"] / prev["tokens_per_cpu_s"], 2)
            row["same_losses_as_before"] = _same_losses(prev["losses"], row["losses"])
    plains = [r for r in rows if r["variant"] == "plain"]
    plain = plains[0] if plains else None

    def ratio(r: dict, key: str) -> float:
        return round(r[key] / (sum(p[key] for p in plains) / len(plains)), 2)

    table = [{k: v for k, v in r.items() if k != "losses"} | (
        {"vs_plain": ratio(r, "tokens_per_s"), "vs_plain_cpu": ratio(r, "tokens_per_cpu_s")} if plains else {})
        for r in rows]
    same = None
    ray1 = next((r for r in rows if r["variant"] == "ray-1"), None)
    if plain and ray1:  # identical rows and step order: the loss curves must agree
        same = _same_losses(plain["losses"], ray1["losses"])
    payload = {"args": {k: v for k, v in vars(args).items() if k != "child"}, "rows": table,
               "plain_and_ray1_same_losses": same, "losses": {r["variant"]: r["losses"] for r in rows}}
    path = write_results("train", payload)
    print(markdown_table(table))
    print(f"plain and ray-1 loss curves agree: {same}\n{path}")


def _same_losses(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-3 * abs(x) for x, y in zip(a, b))


if __name__ == "__main__":  # Ray Train workers are separate processes: keep the guard
    main()
