"""Two evaluations of the same predictors on the same examples, side by side (strict scores, paired CIs).

    python tools/compare_predictions.py RUN_A/predictions RUN_B/predictions --labels free ranked

For every predictor table present in both directories: n, the share of first choices from the model, strict
AccEM / AccRM of each, and B - A with a paired bootstrap 95% CI on the common examples (how docs/predict.md
compares answer modes). Markdown on stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from jobpred.eval.claims import paired_diff, per_example
from jobpred.eval.markdown import markdown_table
from jobpred.predict.answers import FALLBACK_METHODS


def from_model(path: Path) -> float:
    methods = pl.read_parquet(path, columns=["answer_method"])["answer_method"]
    return 100 * float((~methods.is_in(list(FALLBACK_METHODS))).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--labels", nargs=2, default=["A", "B"])
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    la, lb = args.labels
    rows = []
    for path_a in sorted(args.a.glob("*.parquet")):
        path_b = args.b / path_a.name
        if not path_b.exists() or "answer_method" not in pl.read_parquet_schema(path_a):
            continue
        ea, eb = per_example(path_a), per_example(path_b)
        d = paired_diff(eb, ea, args.bootstrap)
        common = ea.join(eb.select("example_id"), on="example_id")
        both = eb.join(ea.select("example_id"), on="example_id")
        rows.append([path_a.stem, str(d["n"]), f"{from_model(path_a):.0f}% / {from_model(path_b):.0f}%",
                     f"{100 * common['rm'].mean():.1f} / {100 * both['rm'].mean():.1f}",
                     f"{d['rm']:+.1f} [{d['rm_ci'][0]:+.1f}, {d['rm_ci'][1]:+.1f}]",
                     f"{d['em']:+.1f} [{d['em_ci'][0]:+.1f}, {d['em_ci'][1]:+.1f}]"])
    print("\n".join(markdown_table(["predictor", "n", f"from the model, {la} / {lb}", f"strict AccRM, {la} / {lb}",
                          f"{lb} - {la}, AccRM [95% CI]", f"{lb} - {la}, AccEM [95% CI]"], rows)))


if __name__ == "__main__":
    main()
