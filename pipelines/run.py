"""Ray job entry point: the main job (synth -> prepare -> reasons -> train -> evaluate -> report, skipping what is done).

This is ``jobpred run`` under a module name that ``ray job submit`` can run from a working directory
(no install needed): the same arguments, the same function (:mod:`jobpred.stages`), the same outputs.

Run as:
    ray job submit --working-dir . -- python -m pipelines.run --config configs/cluster-qwen3-8b.yaml --run /mnt/runs/q3
    python -m pipelines.run --config configs/local.yaml --run runs/demo --force evaluate
"""

import sys

from jobpred.cli import main

if __name__ == "__main__":  # vLLM engines and Ray Train workers start in spawned processes: keep the guard
    sys.exit(main(["run", *sys.argv[1:]]))
