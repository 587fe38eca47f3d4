"""Synthetic generation + prepare (validate, normalise, split) at scale, Ray Data vs one process.

Run as:
    python -m benchmarks.bench_prepare --persons 1000000        # the target: <= 5 min, <= 4 GB
    python -m benchmarks.bench_prepare --persons 100000 --engines ray local

Each engine runs in a fresh subprocess so its peak memory (PSS of the process tree, Ray's workers
included) is its own. Target: 1M persons generated + prepared in <= 5 minutes
and <= 4 GB peak on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import PeakMemory, Timer, machine, markdown_table, write_results


def _one(engine: str, persons: int, workdir: Path) -> dict:
    """Runs inside the child process: synth then prepare, timed separately."""
    from jobpred.config import PrepareConfig, RayConfig, SynthConfig
    from jobpred.data.prepare import prepare
    from jobpred.data.synth import write_synthetic

    data = workdir / "persons.jsonl"
    with PeakMemory() as mem:
        with Timer() as t_synth:
            synth = write_synthetic(SynthConfig(persons=persons, seed=0, partition_size=50_000), data,
                                    progress=False)
        with Timer() as t_prep:
            summary = prepare(data, workdir / f"run-{engine}",
                              PrepareConfig(engine=engine, chunk_mb=8),
                              RayConfig(num_cpus=3, object_store_memory_mb=1024))
    total = t_synth.seconds + t_prep.seconds
    return {
        "engine": engine, "persons": persons, "experiences": synth["experiences"],
        "input_mb": round(data.stat().st_size / 2**20), "synth_s": round(t_synth.seconds, 1),
        "prepare_s": round(t_prep.seconds, 1), "total_s": round(total, 1),
        "persons_per_s": round(persons / t_prep.seconds), "peak_gb": mem.peak_gb,
        "accepted": summary["accepted"], "rejected": summary["rejected"],
        "normalizer_agrees": summary["normalizer_agrees_with_given_code"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--engines", nargs="+", default=["ray", "local"], choices=["ray", "local"])
    parser.add_argument("--name", default="prepare", help="results file name (benchmarks/results/<date>-NAME-*.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print("RESULT " + json.dumps(_one(args.child, args.persons, Path(tmp))))
        return
    rows = []
    for engine in args.engines:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_prepare", "--persons", str(args.persons),
                              "--child", engine], capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{engine} run failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(line[7:]))
    if len(rows) == 2:
        base = next(r for r in rows if r["engine"] == "local")
        for r in rows:
            r["prepare_speedup_vs_local"] = round(base["prepare_s"] / r["prepare_s"], 2)
    print(f"machine: {machine()}")
    print(markdown_table(rows))
    print(f"results: {write_results(args.name, {'persons': args.persons, 'rows': rows})}")


if __name__ == "__main__":
    main()
