"""Do the reason-quality signals carry information? Each one's power to tell reasons apart, on a reasons run.

Run as (after a reasons stage with `reasons.hinted: true` and `reasons.likelihood_gain: true`, e.g. on the
validation split, so nothing is chosen on the test set):
    python -m benchmarks.bench_reason_signals --run RUN_DIR

Two questions with known answers, per signal (the judge's three criteria and their combined score, the
grounding check, the likelihood gain):
- *hinted vs plain*: a hinted candidate's teacher was told the true next occupation, so its reason should
  support it better; a signal of utility should rank hinted reasons above plain ones;
- *answer right vs wrong*: a candidate whose own answer is the true occupation read the history better.
Each is an AUC: the probability that a random candidate of the first group has a higher signal than one of
the second (ties count half; 0.5 = no information), with a bootstrap 95% CI over examples. Reads tables only:
seconds, and no dependence on the machine's load.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl

from benchmarks.common import markdown_table, write_results

SIGNALS = ("factuality", "coherence", "utility", "combined", "grounding", "likelihood_gain")


def auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """P(signal of a positive > signal of a negative), ties half (the Mann-Whitney U statistic, scaled)."""
    if len(pos) == 0 or len(neg) == 0:
        return None
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def auc_ci(frame: pl.DataFrame, signal: str, label: str, samples: int, seed: int) -> dict:
    """AUC of ``signal`` for ``label`` over candidates with both, and its bootstrap CI over examples."""
    data = frame.filter(pl.col(signal).is_not_null() & pl.col(label).is_not_null()).select(
        "example_id", pl.col(signal).cast(pl.Float64), label)
    point = auc(data.filter(pl.col(label))[signal].to_numpy(), data.filter(~pl.col(label))[signal].to_numpy())
    if point is None:
        return {"n": data.height, "auc": None, "lo": None, "hi": None}
    groups = data.partition_by("example_id")
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(samples):
        pick = pl.concat([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        a = auc(pick.filter(pl.col(label))[signal].to_numpy(), pick.filter(~pl.col(label))[signal].to_numpy())
        if a is not None:
            stats.append(a)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return {"n": data.height, "auc": round(point, 3), "lo": round(float(lo), 3), "hi": round(float(hi), 3)}


def candidate_signals(run_dir: str) -> pl.DataFrame:
    """One row per judged candidate: its signals and the two labels (hinted, answer_correct)."""
    from jobpred.config import ReasonsConfig
    from jobpred.reasons.select import score_candidates
    from jobpred.reasons.store import PartStore, reasons_dir
    from jobpred.schema import CANDIDATES_SCHEMA, GAINS_SCHEMA, JUDGEMENTS_SCHEMA

    store = PartStore(reasons_dir(run_dir))
    cands = store.scan("candidates", CANDIDATES_SCHEMA).collect()
    judgements = store.scan("judgements", JUDGEMENTS_SCHEMA).collect()
    gains = store.scan("gains", GAINS_SCHEMA).collect()
    cfg = ReasonsConfig(likelihood_gain=True)  # the scores, not the bar: every column is computed either way
    scored = score_candidates(cands, judgements, cfg, gains)
    return scored.filter(pl.col("judged")).with_columns(hinted=pl.col("variant") == "hinted")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run directory whose reasons stage ran (hinted, likelihood_gain)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    frame = candidate_signals(args.run)
    rows = []
    for signal in SIGNALS:
        row = {"signal": signal}
        for label in ("hinted", "answer_correct"):
            r = auc_ci(frame, signal, label, args.bootstrap, args.seed)
            row[f"{label}: n"] = r["n"]
            row[f"{label}: AUC [95% CI]"] = "-" if r["auc"] is None else f"{r['auc']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"
        rows.append(row)
    counts = {"examples": frame["example_id"].n_unique(), "judged_candidates": frame.height,
              "hinted": int(frame["hinted"].sum()), "answer_correct": int(frame["answer_correct"].sum())}
    print(counts)
    print(markdown_table(rows))
    path = write_results("reason_signals", {"run": args.run, "counts": counts, "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
