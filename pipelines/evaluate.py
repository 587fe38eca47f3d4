"""Ray job entry point: baselines and LLM predictors on the test split, then the report.

This is ``jobpred evaluate`` under a module name that ``ray job submit`` can run from a working directory
(no install needed): the same arguments, the same function (:mod:`jobpred.stages`), the same outputs.

Run as:
    ray job submit --working-dir . -- python -m pipelines.evaluate --config configs/gpu-cluster.yaml --run /mnt/runs/r1
    python -m pipelines.evaluate --config configs/local.yaml --run runs/demo --baselines-only
"""

import sys

from jobpred.cli import main

if __name__ == "__main__":  # vLLM engines and Ray Train workers start in spawned processes: keep the guard
    sys.exit(main(["evaluate", *sys.argv[1:]]))
