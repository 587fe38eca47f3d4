"""Oracle reasons at scale: candidates (teacher) -> judge (three criteria) -> select (+ DPO pairs).

Run as:
    jobpred reasons --config configs/local.yaml --run runs/demo          # after `jobpred prepare`
    ray job submit --working-dir . -- python -m pipelines.reasons --config configs/gpu-cluster.yaml --run RUN

Two Ray Data executions do the LLM work (every execution starts its engines: ~50 s on a CPU): one for all
candidates (:mod:`.generate`), one for all three judge criteria (:mod:`.judge`), plus one only when
some judgements failed to parse (their single retry) and one with ``reasons.likelihood_gain`` (:mod:`.gain`:
how much each reason raises the likelihood of the true occupation). :mod:`.select` is polars. Outputs in
``RUN_DIR/reasons/`` (schemas in :mod:`jobpred.schema`): ``candidates/``, ``judgements/``, ``gains/``, ``errors/``
(committed Parquet parts), ``outcomes.parquet`` (one row per planned example: oracle | no_oracle | error),
``oracle.parquet``, ``dpo_pairs.parquet``, ``progress.json``.

Killed at any point and started again with the same config, the stage resumes: committed examples are
skipped, half-written parts are discarded (:mod:`.store`). Started again with a config that would make
different candidates or judgements, it refuses (use a new run directory, or delete ``RUN_DIR/reasons``).
"""

from __future__ import annotations

import json
import os
import time

from jobpred.config import JobpredConfig, ReasonsConfig
from jobpred.llm.engine import engine_starts, model_name
from jobpred.llm.prompts import CRITERIA, PROMPTS
from jobpred.reasons import gain, generate, judge, select
from jobpred.reasons.store import PartStore, reasons_dir
from jobpred.rundir import RunDir
from jobpred.schema import JUDGEMENTS_SCHEMA, REASON_ERRORS_SCHEMA
from jobpred.storage import make_dir, write_text_atomic

OUTPUTS = {"candidates": "reasons/candidates", "judgements": "reasons/judgements", "gains": "reasons/gains",
           "errors": "reasons/errors",
           "outcomes": "reasons/outcomes.parquet", "oracle": "reasons/oracle.parquet",
           "dpo_pairs": "reasons/dpo_pairs.parquet", "progress": "reasons/progress.json"}


# The prompts whose versions a reasons directory records: the teacher's and the judges' ("answer" too, which
# runs made before the registry held the predictors' prompts recorded; dropping it would refuse to resume them).
_PROMPTS = ("candidate", "hinted", "answer", *CRITERIA)


def fingerprint(cfg: ReasonsConfig) -> dict:
    """The settings that shape candidates and judgements: a resumed run must match them."""
    def llm(c) -> dict:
        return {"backend": c.backend, "model": c.model if c.backend == "vllm" else c.http.model,
                "max_model_len": c.max_model_len, "dtype": c.dtype, "chat_template_kwargs": c.chat_template_kwargs}

    keys = ("split", "n_candidates", "hinted", "temperature", "top_p", "max_tokens", "seed", "prefill_think",
            "constrain_format", "judge_temperature", "judge_retry_temperature", "judge_max_tokens")
    return {"teacher": llm(cfg.teacher), "judge": llm(cfg.judge), **{k: getattr(cfg, k) for k in keys},
            "prompts": {name: PROMPTS[name].version for name in _PROMPTS}}


def _check_fingerprint(cfg: ReasonsConfig, run_dir: str | os.PathLike) -> None:
    root = reasons_dir(run_dir)
    path = root / "config.json"
    mine = fingerprint(cfg)
    if path.exists():
        theirs = json.loads(path.read_text())
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise ValueError(f"{root} was made with different settings ({', '.join(diff)}); use a new run "
                             f"directory or delete {root} to start over")
        removed = PartStore(root).recover()
        if removed:
            print(f"reasons: resuming; discarded {removed} part file(s) of an unfinished commit")
        return
    write_text_atomic(path, json.dumps(mine, indent=2) + "\n")


def run(cfg: JobpredConfig, run_dir: str | os.PathLike) -> dict:
    """All three steps, resuming where a previous run stopped; records the stage in the manifest."""
    rcfg = cfg.reasons
    _check_fingerprint(rcfg, run_dir)
    timings, started, engines = {}, time.perf_counter(), {}
    t, before = time.perf_counter(), engine_starts()
    gen = generate.run(cfg, run_dir)
    timings["candidates_s"], engines["candidates"] = round(time.perf_counter() - t, 1), engine_starts() - before
    t, before = time.perf_counter(), engine_starts()
    jud = judge.run(cfg, run_dir)
    timings["judge_s"], engines["judge"] = round(time.perf_counter() - t, 1), engine_starts() - before
    gains = None
    if rcfg.likelihood_gain:
        t, before = time.perf_counter(), engine_starts()
        gains = gain.run(cfg, run_dir)
        timings["gain_s"], engines["gain"] = round(time.perf_counter() - t, 1), engine_starts() - before
    t = time.perf_counter()
    counts = select.run(cfg, run_dir)
    timings["select_s"] = round(time.perf_counter() - t, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    root = reasons_dir(run_dir)
    for name in ("candidates", "judgements", "gains", "errors"):
        make_dir(root / name)
    counts.update(_table_counts(root))
    RunDir(run_dir).record_stage(
        "reasons", outputs=OUTPUTS, config=rcfg, counts=counts, model=model_name(rcfg.teacher),
        extra={"judge_model": model_name(rcfg.judge), "fingerprint": fingerprint(rcfg),
               "this_run": {"candidates": gen, "judge": jud, "gain": gains, "timings": timings,
                            "engine_starts": engines}},
    )
    return {**counts, "timings": timings}


def _table_counts(root) -> dict:
    store = PartStore(root)
    j = store.scan("judgements", JUDGEMENTS_SCHEMA).group_by("status").len().collect()
    e = store.scan("errors", REASON_ERRORS_SCHEMA).group_by("scope").len().collect()
    return {"judgements_by_status": dict(j.iter_rows()), "errors_by_scope": dict(e.iter_rows())}
