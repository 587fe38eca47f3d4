"""Ray job entry point for evaluation: the baselines on a run directory, then its report.

Run as:
    ray job submit --working-dir . -- python -m pipelines.evaluate --config configs/gpu-cluster.yaml \
        --run /shared/runs/r1 baselines.use_ray_train=true
    python -m pipelines.evaluate --config configs/local.yaml --run runs/demo

Baselines only for now: the LLM predictors join when the prediction stage exists (same report, more rows).
"""

from __future__ import annotations

import argparse
import json

from jobpred.config import JobpredConfig, load_config


def main(cfg: JobpredConfig, run_dir: str) -> dict:
    from jobpred.eval import run_baselines, run_report

    baselines = run_baselines(cfg, run_dir)
    report = run_report(run_dir, bootstrap=cfg.baselines.bootstrap_samples, seed=cfg.baselines.bootstrap_seed)
    return {"baselines": baselines, **report}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    print(json.dumps(main(load_config(args.config, args.overrides), args.run), indent=2))
