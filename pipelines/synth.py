"""Ray job entry point for synthetic career data (streams partitions; 1M persons fit in a few hundred MB).

Run as:
    ray job submit --working-dir . -- python -m pipelines.synth --config configs/gpu-cluster.yaml --out /mnt/runs/persons
"""

from __future__ import annotations

import argparse
import json

from jobpred.config import JobpredConfig, load_config


def main(cfg: JobpredConfig, out: str) -> dict:
    from jobpred.data.synth import write_synthetic

    return write_synthetic(cfg.synth, out, progress=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    print(json.dumps(main(load_config(args.config, args.overrides), args.out)))
