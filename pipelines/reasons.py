"""Ray job entry point: oracle reasons (teacher candidates -> judge -> selection -> DPO pairs; resumable).

This is ``jobpred reasons`` under a module name that ``ray job submit`` can run from a working directory
(no install needed): the same arguments, the same function (:mod:`jobpred.stages`), the same outputs.

Run as:
    ray job submit --working-dir . -- python -m pipelines.reasons --config configs/gpu-cluster.yaml --run /mnt/runs/r1
    python -m pipelines.reasons --config configs/local.yaml --run runs/demo reasons.max_examples=8
"""

import sys

from jobpred.cli import main

if __name__ == "__main__":  # vLLM engines and Ray Train workers start in spawned processes: keep the guard
    sys.exit(main(["reasons", *sys.argv[1:]]))
