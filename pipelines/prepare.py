"""Ray job entry point: validate records, normalise titles, build and split examples.

This is ``jobpred prepare`` under a module name that ``ray job submit`` can run from a working directory
(no install needed): the same arguments, the same function (:mod:`jobpred.stages`), the same outputs.

Run as:
    ray job submit --working-dir . -- python -m pipelines.prepare --config configs/gpu-cluster.yaml \
        --input /mnt/careers/ --run /mnt/runs/r1
    python -m pipelines.prepare --config configs/local.yaml --input data/persons.jsonl --run runs/demo
"""

import sys

from jobpred.cli import main

if __name__ == "__main__":  # vLLM engines and Ray Train workers start in spawned processes: keep the guard
    sys.exit(main(["prepare", *sys.argv[1:]]))
