"""Ray job entry point for the prepare stage (validate, normalise, build examples, split).

Run as:
    ray job submit --working-dir . -- python -m pipelines.prepare --config configs/gpu-cluster.yaml \
        --input s3://bucket/careers/ --run s3://bucket/runs/r1
    python -m pipelines.prepare --config configs/local.yaml --input data/persons.jsonl --run runs/demo
"""

from __future__ import annotations

import argparse
import json

from jobpred.config import JobpredConfig, load_config


def main(cfg: JobpredConfig, input_path: str, run_dir: str, input_format: str = "jsonl") -> dict:
    from jobpred.data.prepare import prepare

    return prepare(input_path, run_dir, cfg.prepare, cfg.ray, input_format=input_format)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--format", default="jsonl")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    print(json.dumps(main(load_config(args.config, args.overrides), args.input, args.run, args.format), indent=2))
