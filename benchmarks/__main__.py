"""The benchmark suite: every benchmark at a size that fits this machine, one results file, tables, plots.

Run as:
    python -m benchmarks              # or `make bench`; under 30 minutes on the 2-core CPU machine
    python -m benchmarks --only prepare normalize   # reruns these; today's suite file keeps the rest

Each benchmark runs in its own subprocess (its own Ray, its own peak memory) and writes its JSON under
``benchmarks/results/``; the suite gathers them into ``results/<date>-<host>.json`` and ``.md`` and draws
``results/<date>-*.png``. Every table carries its reference measured in the same run (plain vLLM,
transformers, a single-process loop), so ratios, not the noisy absolute times, are what to compare.
Benchmarks of stages that are not built yet are skipped and listed as such.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import CONFIG, REPO, RESULTS, machine, markdown_table

# name -> (module, args, results file names it writes). Sizes chosen so that the whole suite fits 30 minutes
# on the 2-core CPU machine (each script's own defaults are larger: see benchmarks/results/*-full.md).
SUITE: dict[str, tuple[str, list[str], list[str]]] = {
    "prepare": ("benchmarks.bench_prepare", [], []),  # run at several sizes below
    "normalize": ("benchmarks.bench_normalize", ["--n", "10000"], ["normalize"]),
    "score": ("benchmarks.bench_score", ["--predictions", "1000000", "--persons", "300000"], ["score"]),
    "reasons": ("benchmarks.bench_reasons", ["--prompts", "48", "--new-tokens", "48", "--hf-prompts", "16",
                                             "--judge-prompts", "48", "--ray-small", "16"], ["reasons"]),
    "train": ("benchmarks.bench_train", [], ["train"]),
    "predict": ("benchmarks.bench_predict", ["--prompts", "12", "--ray-small", "4", "--paths", "vllm", "ray"],
                ["predict"]),
    "batch": ("benchmarks.bench_batch", ["--sizes", "1", "4", "16", "--min-prompts", "16"], ["batch"]),
    "serve": ("benchmarks.bench_serve", ["--levels", "1", "8", "--requests", "4", "8", "--mixed", "10"], ["serve"]),
    "prompts": ("benchmarks.bench_prompts", ["--persons", "100"], ["prompts"]),
    "cost": ("benchmarks.bench_cost", [], ["cost"]),  # reads runs/local after `make demo`, else runs the smoke job
}
PLOTS = {"batch": "batch-*.png", "serve": "serve-*.png"}
"""Plots a benchmark draws itself (results/<date>-<pattern>), linked from the suite's Markdown."""
PREPARE_SIZES = (10_000, 50_000, 200_000)


def _run(module: str, args: list[str]) -> tuple[bool, str]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)
    took = f"{time.perf_counter() - started:.0f}s"
    if out.returncode != 0:
        return False, f"failed after {took}: {out.stderr.strip().splitlines()[-1:]}"
    return True, took


def _load(name: str) -> dict | None:
    """Today's results file of one benchmark (exactly ``<date>-<name>-<cores>cpu.json``, so that ``reasons``
    does not pick up ``reasons-streaming``)."""
    path = RESULTS / f"{_dt.date.today().isoformat()}-{name}-{machine()['cores']}cpu.json"
    return json.loads(path.read_text()) if path.exists() else None


def _plot_prepare(runs: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for engine in ("ray", "local"):
        pts = sorted((r["persons"], r["persons_per_s"]) for run in runs for r in run["rows"] if r["engine"] == engine)
        if pts:
            ax.plot(*zip(*pts), marker="o", label={"ray": "Ray Data", "local": "one process"}[engine])
    ax.set_xscale("log")
    ax.set_xlabel("persons (synthetic records)")
    ax.set_ylabel("prepare throughput (persons/s)")
    ax.set_title(f"prepare throughput vs records ({machine()['cores']} cores)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(stamp: str, host: str, gathered: dict, status: dict) -> str:
    """The suite's Markdown: every table of every gathered results file, the plots, the status list."""
    config = os.environ.get("JOBPRED_BENCH_CONFIG") or CONFIG.relative_to(REPO)  # --config sets it after import
    lines = [f"# Benchmarks {stamp} on {host}", "", f"Machine: `{json.dumps(machine())}`", "",
             f"Settings: `{config}`", ""]
    for name, res in gathered.items():
        if name == "prepare":
            rows = [r for run in res for r in run["rows"]]
            lines += ["## prepare (synth + prepare, Ray Data vs one process)", "", markdown_table(rows), "",
                      f"![prepare throughput]({stamp}-prepare-throughput.png)", ""]
            continue
        for key, value in res.items():  # every list of row dicts is a table
            if isinstance(value, list) and value and isinstance(value[0], dict):
                lines += [f"## {name}: {key}", "", markdown_table(value), ""]
        if name in PLOTS:
            lines += [f"![{name}]({png.name})" for png in sorted(RESULTS.glob(f"{stamp}-{PLOTS[name]}"))] + [""]
    return "\n".join([*lines, "## Status", "", *[f"- {k}: {v}" for k, v in status.items()], ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SUITE),
                        help="run only these benchmarks (today's suite file keeps the others' results)")
    parser.add_argument("--config", type=Path, help="engine, training and serving settings of every benchmark "
                        "(default configs/local.yaml; e.g. configs/gpu-cluster.yaml on a GPU node)")
    args = parser.parse_args()
    if args.config:  # read by benchmarks.common in each benchmark's subprocess
        os.environ["JOBPRED_BENCH_CONFIG"] = str(args.config.resolve())
    stamp, host = _dt.date.today().isoformat(), platform.node().split(".")[0] or "machine"
    summary = RESULTS / f"{stamp}-{host}.json"
    previous = json.loads(summary.read_text()) if args.only and summary.exists() else {}
    status: dict[str, str] = previous.get("status", {})
    gathered: dict[str, object] = previous.get("results", {})
    for name in args.only or SUITE:
        module, margs, files = SUITE[name]
        if importlib.util.find_spec(module) is None:
            status[name] = "skipped: not built yet"
            continue
        if name == "prepare":
            for key in [k for k in status if k.startswith("prepare-")]:  # sizes of an earlier run
                del status[key]
            runs = []
            for n in PREPARE_SIZES:
                ok, msg = _run(module, ["--persons", str(n), "--name", f"prepare-{n}"])
                status[f"prepare-{n}"] = msg
                if ok and (res := _load(f"prepare-{n}")):
                    runs.append(res)
            if runs:
                gathered["prepare"] = runs
                _plot_prepare(runs, RESULTS / f"{stamp}-prepare-throughput.png")
            continue
        ok, status[name] = _run(module, margs)
        for f in files:
            if ok and (res := _load(f)):
                gathered[f] = res
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"date": stamp, "host": host, "machine": machine(), "status": status,
                                   "results": gathered}, indent=2) + "\n")
    text = _markdown(stamp, host, gathered, status)
    summary.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
