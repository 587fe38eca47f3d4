"""Ray job entry point for LoRA fine-tuning on oracle reasons (SFT, then optionally DPO; resumable).

Run as:
    ray job submit --working-dir . -- python -m pipelines.train --config configs/gpu-cluster.yaml --run /mnt/runs/r1
    python -m pipelines.train --config configs/local.yaml --run runs/demo --mode two-model --dpo
"""

from __future__ import annotations

import argparse
import json

from jobpred.config import JobpredConfig, load_config


def main(cfg: JobpredConfig, run_dir: str, mode: str | None = None, dpo: bool | None = None) -> dict:
    from jobpred.train import run

    return run(cfg, run_dir, mode=mode, dpo=dpo)


if __name__ == "__main__":  # Ray Train workers and Ray Data actors are separate processes: keep the guard
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--mode", choices=("joint", "two-model"), help="train.mode")
    parser.add_argument("--dpo", action="store_true", default=None, help="DPO after SFT (train.dpo.enabled)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    print(json.dumps(main(load_config(args.config, args.overrides), args.run, args.mode, args.dpo), indent=2,
                     default=str))
