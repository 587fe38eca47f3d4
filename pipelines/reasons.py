"""Ray job entry point for the oracle-reasons stage (candidates -> judge -> select, resumable).

Run as:
    ray job submit --working-dir . -- python -m pipelines.reasons --config configs/gpu-cluster.yaml --run /mnt/runs/r1
    python -m pipelines.reasons --config configs/local.yaml --run runs/demo reasons.max_examples=8
"""

from __future__ import annotations

import argparse
import json

from jobpred.config import JobpredConfig, load_config


def main(cfg: JobpredConfig, run_dir: str) -> dict:
    from jobpred.reasons import run

    return run(cfg, run_dir)


if __name__ == "__main__":  # vLLM starts engines in spawned processes: the guard is required
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    print(json.dumps(main(load_config(args.config, args.overrides), args.run), indent=2, default=str))
