"""Ray job entry point: scores, paired CIs, claims and plots of a run's predictions.

This is ``jobpred report`` under a module name that ``ray job submit`` can run from a working directory
(no install needed): the same arguments, the same function (:mod:`jobpred.stages`), the same outputs.

Run as:
    ray job submit --working-dir . -- python -m pipelines.report --config configs/gpu-cluster.yaml --run /mnt/runs/r1
"""

import sys

from jobpred.cli import main

if __name__ == "__main__":  # vLLM engines and Ray Train workers start in spawned processes: keep the guard
    sys.exit(main(["report", *sys.argv[1:]]))
