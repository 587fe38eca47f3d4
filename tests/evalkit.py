"""A synthetic run directory with the baselines already run, built once per test session.

test_baselines.py and test_report.py share it (3000 persons -> ~330 test examples; ~15 s on 2 cores).
"""

from __future__ import annotations

import functools
from pathlib import Path

from jobpred.config import BaselinesConfig, PrepareConfig, SynthConfig
from jobpred.data.prepare import prepare
from jobpred.data.synth import write_synthetic

PERSONS = 3000


@functools.cache
def baseline_run(base: Path) -> Path:
    """``base/eval_run``: synth (3000 persons, seed 0) + prepare (local) + every baseline."""
    from jobpred.eval import baselines

    data, run = base / "eval_data" / "persons.jsonl", base / "eval_run"
    write_synthetic(SynthConfig(persons=PERSONS, seed=0), data, progress=False)
    prepare(data, run, PrepareConfig(engine="local"))
    baselines.run(BaselinesConfig(), run)
    return run
