"""Ray job entry point: LoRA fine-tuning on oracle reasons on Ray Train (SFT, then optionally DPO; resumable).

This is ``jobpred train`` under a module name that ``ray job submit`` can run from a working directory
(no install needed): the same arguments, the same function (:mod:`jobpred.stages`), the same outputs.

Run as:
    ray job submit --working-dir . -- python -m pipelines.train --config configs/gpu-cluster.yaml --run /mnt/runs/r1
    python -m pipelines.train --config configs/local.yaml --run runs/demo --mode two-model --dpo
"""

import sys

from jobpred.cli import main

if __name__ == "__main__":  # vLLM engines and Ray Train workers start in spawned processes: keep the guard
    sys.exit(main(["train", *sys.argv[1:]]))
