"""Ray job entry point: synthetic career records grounded in O*NET (streams partitions; 1M persons fit in a few hundred MB).

This is ``jobpred synth`` under a module name that ``ray job submit`` can run from a working directory
(no install needed): the same arguments, the same function (:mod:`jobpred.stages`), the same outputs.

Run as:
    ray job submit --working-dir . -- python -m pipelines.synth --config configs/gpu-cluster.yaml --out /mnt/runs/persons
"""

import sys

from jobpred.cli import main

if __name__ == "__main__":  # vLLM engines and Ray Train workers start in spawned processes: keep the guard
    sys.exit(main(["synth", *sys.argv[1:]]))
