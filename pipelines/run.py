"""Ray job entry point for the main job: synth -> prepare -> reasons -> train -> evaluate -> report.

Run as:
    ray job submit --working-dir . -- python -m pipelines.run --config configs/cluster-qwen3-8b.yaml --run /mnt/runs/q3
    python -m pipelines.run --config configs/local.yaml --run runs/demo --force evaluate

Stages already done with the same config are skipped, so submitting the same job again continues a
killed one; ``--force STAGE`` redoes STAGE and every stage after it (see jobpred/pipeline.py).
"""

from __future__ import annotations

import argparse
import json

from jobpred.config import JobpredConfig, load_config


def main(cfg: JobpredConfig, run_dir: str, force: set[str] = frozenset(), input_path: str | None = None,
         input_format: str | None = None) -> dict:
    from jobpred.pipeline import run_all

    return run_all(cfg, run_dir, force=force, input_path=input_path, input_format=input_format)


if __name__ == "__main__":  # vLLM engines and Ray Train workers are separate processes: keep the guard
    from jobpred.pipeline import STAGE_NAMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--force", action="append", choices=STAGE_NAMES, default=[], metavar="STAGE")
    parser.add_argument("--input", help="career records to prepare instead of synthesizing them")
    parser.add_argument("--format", help="format of --input: jsonl, parquet, jobhop, karrierewege, decorte")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    result = main(load_config(args.config, args.overrides), args.run, set(args.force), args.input, args.format)
    print(json.dumps({k: result[k] for k in ("run_dir", "report", "seconds")}, indent=2))
