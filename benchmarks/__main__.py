"""The benchmark suite: every benchmark at a size that fits this machine, one results file, tables, plots.

Run as:
    python -m benchmarks              # or `make bench`; about 20-30 minutes on the 2-core CPU machine
    python -m benchmarks --only prepare normalize

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
import platform
import subprocess
import sys
import time

from benchmarks.common import RESULTS, machine, markdown_table

# name -> (module, args, results file names it writes). Sizes chosen so the whole suite fits ~30 minutes.
SUITE: dict[str, tuple[str, list[str], list[str]]] = {
    "prepare": ("benchmarks.bench_prepare", [], []),  # run at several sizes below
    "normalize": ("benchmarks.bench_normalize", ["--n", "10000"], ["normalize"]),
    "score": ("benchmarks.bench_score", ["--predictions", "1000000", "--persons", "300000"], ["score"]),
    "reasons": ("benchmarks.bench_reasons", ["--prompts", "128", "--new-tokens", "48", "--hf-prompts", "32"],
                ["reasons"]),
    "train": ("benchmarks.bench_train", [], ["train"]),
    "predict": ("benchmarks.bench_predict", [], ["predict"]),
    "batch": ("benchmarks.bench_batch", [], ["batch"]),
    "serve": ("benchmarks.bench_serve", [], ["serve"]),
}
PLOTS = {"batch": "batch-*.png", "serve": "serve-*.png"}
"""Plots a benchmark draws itself (results/<date>-<pattern>), linked from the suite's Markdown."""
PREPARE_SIZES = (20_000, 100_000, 300_000)


def _run(module: str, args: list[str]) -> tuple[bool, str]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)
    took = f"{time.perf_counter() - started:.0f}s"
    if out.returncode != 0:
        return False, f"failed after {took}: {out.stderr.strip().splitlines()[-1:]}"
    return True, took


def _load(name: str) -> dict | None:
    files = sorted(RESULTS.glob(f"{_dt.date.today().isoformat()}-{name}-*.json"))
    return json.loads(files[-1].read_text()) if files else None


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SUITE), help="run only these benchmarks")
    args = parser.parse_args()
    stamp, host = _dt.date.today().isoformat(), platform.node().split(".")[0] or "machine"
    status: dict[str, str] = {}
    sections: list[str] = [f"# Benchmarks {stamp} on {host}", "", f"Machine: `{json.dumps(machine())}`", ""]
    gathered: dict[str, object] = {}
    for name in args.only or SUITE:
        module, margs, files = SUITE[name]
        if importlib.util.find_spec(module) is None:
            status[name] = "skipped: not built yet"
            continue
        if name == "prepare":
            runs = []
            for n in PREPARE_SIZES:
                ok, msg = _run(module, ["--persons", str(n), "--name", f"prepare-{n}"])
                status[f"prepare-{n}"] = msg
                if ok and (res := _load(f"prepare-{n}")):
                    runs.append(res)
            gathered["prepare"] = runs
            if runs:
                _plot_prepare(runs, RESULTS / f"{stamp}-prepare-throughput.png")
                rows = [r for run in runs for r in run["rows"]]
                sections += ["## prepare (synth + prepare, Ray Data vs one process)", "", markdown_table(rows),
                             "", f"![prepare throughput]({stamp}-prepare-throughput.png)", ""]
            continue
        ok, status[name] = _run(module, margs)
        for f in files:
            if ok and (res := _load(f)):
                gathered[f] = res
                for key, value in res.items():  # every list of row dicts is a table
                    if isinstance(value, list) and value and isinstance(value[0], dict):
                        sections += [f"## {f}: {key}", "", markdown_table(value), ""]
        if ok and name in PLOTS:
            sections += [f"![{name}]({png.name})" for png in sorted(RESULTS.glob(f"{stamp}-{PLOTS[name]}"))] + [""]
    sections += ["## Status", "", *[f"- {k}: {v}" for k, v in status.items()], ""]
    (RESULTS / f"{stamp}-{host}.json").write_text(
        json.dumps({"date": stamp, "host": host, "machine": machine(), "status": status, "results": gathered},
                   indent=2) + "\n")
    (RESULTS / f"{stamp}-{host}.md").write_text("\n".join(sections))
    print("\n".join(sections))


if __name__ == "__main__":
    main()
