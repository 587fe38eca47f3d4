"""The evaluation report: every predictor in ``RUN_DIR/predictions/`` scored the same way, side by side.

Run as:
    jobpred evaluate --config configs/local.yaml --run runs/demo --baselines-only   # baselines, then this

Writes ``RUN_DIR/report/``: ``metrics.json`` (everything :func:`jobpred.eval.score.score_predictions`
returns, per predictor), ``report.md`` (headline table with 95% CIs, breakdowns by target Job Zone,
history length and SOC major-group change, the most frequent major-group errors) and PNG plots. It is
data-driven over the predictions folder: a new predictor (an LLM, a fine-tuned model) is one more
``<name>.parquet`` there and so one more row and one more bar, with no code here.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import polars as pl

from jobpred.eval.claims import claims_section
from jobpred.eval.markdown import markdown_table
from jobpred.eval.score import score_predictions, served_figures, standardize_table
from jobpred.predictions import example_features, find_predictions
from jobpred.rundir import RunDir
from jobpred.storage import location, make_dir, save_figure

REPORT_DIR = "report"
HEADLINE = ("AccEM", "AccRM", "Acc@5", "MRR")
BREAKDOWNS = {"job_zone": "target Job Zone", "history_length": "history length (jobs)",
              "major_group_change": "SOC major group of the target vs the last job"}
SOC_MAJOR_GROUPS = {
    "11": "Management", "13": "Business and Financial Operations", "15": "Computer and Mathematical",
    "17": "Architecture and Engineering", "19": "Life, Physical, and Social Science",
    "21": "Community and Social Service", "23": "Legal", "25": "Educational Instruction and Library",
    "27": "Arts, Design, Entertainment, Sports, and Media", "29": "Healthcare Practitioners and Technical",
    "31": "Healthcare Support", "33": "Protective Service", "35": "Food Preparation and Serving Related",
    "37": "Building and Grounds Cleaning and Maintenance", "39": "Personal Care and Service",
    "41": "Sales and Related", "43": "Office and Administrative Support", "45": "Farming, Fishing, and Forestry",
    "47": "Construction and Extraction", "49": "Installation, Maintenance, and Repair", "51": "Production",
    "53": "Transportation and Material Moving", "55": "Military Specific",
}


def load_frame(path: Path, features: pl.LazyFrame, strict: bool = True, ids: set[str] | None = None) -> pl.DataFrame:
    """A predictions table as a standard frame (``strict``: fall-backs are misses), with history features
    from the examples when absent; only the examples in ``ids`` when given."""
    table = pl.read_parquet(str(path))
    if ids is not None:
        table = table.filter(pl.col("example_id").is_in(sorted(ids)))
    frame = standardize_table(table, strict=strict)
    wanted = [c for c in ("history_len", "last_code") if c not in frame.columns]
    if wanted and "example_id" in frame.columns:
        extra = features.select("example_id", *wanted).collect()
        frame = frame.join(extra, on="example_id", how="left", maintain_order="left")
    return frame


def common_examples(tables: dict[str, Path]) -> set[str] | None:
    """The example ids every table predicted (None when they all cover the same examples)."""
    sets = [set(pl.read_parquet(str(p), columns=["example_id"])["example_id"]) for p in tables.values()]
    common = set.intersection(*sets) if sets else set()
    return None if all(s == common for s in sets) else common


def score_run(run: RunDir, bootstrap: int = 1000, seed: int = 0, tables: dict[str, Path] | None = None,
              examples_run: RunDir | None = None, ids: set[str] | None = None) -> dict[str, dict]:
    """Predictor name -> score_predictions(...) (strict) for every table in the run's predictions folder (or
    ``tables``), on the examples in ``ids`` when given; an LLM predictor's result adds ``served`` (the
    headline with fall-backs scored as served) and ``from_model`` (share of first choices from the model)."""
    tables = find_predictions(run) if tables is None else tables
    if not tables:
        raise FileNotFoundError(
            f"{run.path / 'predictions'} has no <predictor>.parquet; run `jobpred evaluate --baselines-only`"
        )
    examples = pl.scan_parquet(str((examples_run or run).output("prepare", "examples") / "*.parquet"))
    features = example_features(examples)
    results = {}
    for name, path in tables.items():
        frame = load_frame(path, features, ids=ids)
        result = score_predictions(frame, bootstrap=bootstrap, seed=seed)
        if "fallback" in frame.columns:
            result["served"] = served_figures(load_frame(path, features, strict=False, ids=ids), bootstrap, seed)
            result["from_model"] = round(100 * (1 - result["fallback"] / max(1, result["total"])), 1)
        results[name] = result
    return results


def build_report(run_dir, bootstrap: int = 1000, seed: int = 0, eval_run=None) -> dict:
    """Score every predictor, write report.md, metrics.json and the plots; record the ``report`` stage.

    With ``eval_run`` (another run directory whose test split the predictions were made on), the tables
    come from ``RUN_DIR/predictions/on-<name>/`` and the report goes to ``RUN_DIR/report/on-<name>/``."""
    run = RunDir(run_dir)
    suffix = f"on-{location(eval_run).name}" if eval_run else None
    folder = run.path / "predictions" / suffix if suffix else run.path / "predictions"
    tables = {p.stem: p for p in sorted(folder.glob("*.parquet"))}
    examples_run = RunDir(eval_run) if eval_run else None
    ids = common_examples(tables)  # every predictor compared on the same examples
    results = score_run(run, bootstrap, seed, tables, examples_run, ids)
    whole = score_run(run, 0, seed, tables, examples_run) if ids is not None else {}
    rel = f"{REPORT_DIR}/{suffix}" if suffix else REPORT_DIR
    out = run.path / rel
    make_dir(out)
    stage = run.manifest()["stages"].get("predict-" + suffix if suffix else "predict", {})
    meta = {"run": str(run.path), "examples_from": str(eval_run or run.path), "bootstrap_samples": bootstrap,
            "bootstrap_seed": seed, "skipped": stage.get("counts", {}).get("skipped", {}),
            "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    plots = write_plots(results, out)
    claim_lines, claim_plots, claims = claims_section(run, tables, results, out, bootstrap, seed)
    (out / "metrics.json").write_text(json.dumps({**meta, "predictors": results, "claims": claims,
                                                  "whole_split": whole}, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(results, meta, plots, whole) + "\n".join(claim_lines) + "\n")
    plots += claim_plots
    outputs = {"report": f"{rel}/report.md", "metrics": f"{rel}/metrics.json",
               **{Path(p).stem: f"{rel}/{p}" for p in plots}}
    run.record_stage("report" if not suffix else f"report-{suffix}", outputs=outputs, config=meta,
                     counts={n: r["total"] for n, r in results.items()})
    return {"report": str(out / "report.md"), "metrics": str(out / "metrics.json"),
            "plots": [str(out / p) for p in plots],
            "predictors": {n: {m: r.get(m) for m in HEADLINE} for n, r in results.items()}}


# ---- markdown ----------------------------------------------------------------------------------------


def _cell(result: dict, metric: str) -> str:
    value = result.get(metric)
    if value is None:
        return "-"
    lo, hi = result["ci"].get(metric, [None, None])
    return f"{value:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{value:.2f}"


def _group_name(code: str) -> str:
    return f"{code} {SOC_MAJOR_GROUPS.get(code, '')}".strip()


def render_markdown(results: dict[str, dict], meta: dict, plots: list[str], whole: dict | None = None) -> str:
    order = sorted(results, key=lambda n: -(results[n]["AccRM"] or 0.0))
    n_common = {results[n]["total"] for n in order}
    intro = (f"Generated {meta['generated_at']}. Percentages; 95% bootstrap CIs in brackets "
             f"({meta['bootstrap_samples']} resamples, seed {meta['bootstrap_seed']}). Every predictor is scored on "
             f"the same examples. AccEM / AccRM as in the paper, strict: an invalid or missing prediction is a "
             "miss, and so is an LLM first choice that came from a fall-back rather than from the model's output "
             "('from the model' is the share that did not). 'served' scores the fall-backs as the product serves "
             "them. Acc@5 and MRR over each predictor's ranked list ('-' where it does not rank).")
    lines = [f"# Evaluation report: {meta['run']}", "", intro, "", "## Predictors", ""]
    rows = [[n, str(results[n]["total"]), f"{results[n]['from_model']:.0f}%" if "from_model" in results[n] else "-",
             str(results[n]["invalid"]), str(results[n]["missing"]), *[_cell(results[n], m) for m in HEADLINE],
             *[_cell(results[n]["served"], m) if "served" in results[n] else "-" for m in ("AccEM", "AccRM")]]
            for n in order]
    lines += markdown_table(["predictor", "n", "from the model", "invalid", "missing", *HEADLINE,
                             "served AccEM", "served AccRM"], rows)
    if whole:
        lines += ["", f"The table above is the {'/'.join(map(str, sorted(n_common)))} examples every predictor ran "
                  "on (LLM predictors run on the first `predict.max_examples` of the split). On each predictor's "
                  "whole set:", ""]
        lines += markdown_table(["predictor", "n", *HEADLINE],
                                [[n, str(w["total"]), *[_cell(w, m) for m in HEADLINE]] for n, w in whole.items()])
    for name, why in meta.get("skipped", {}).items():
        lines += ["", f"Not run: **{name}** ({why})."]
    if "metrics.png" in plots:
        lines += ["", "![headline metrics](metrics.png)"]
    for key, title in BREAKDOWNS.items():
        groups = _groups_of(results, key)
        if not groups:
            continue
        lines += ["", f"## Accuracy by {title}", "", "AccEM / AccRM per group; n = examples in the group.", ""]
        rows = []
        for g in groups:
            cells = [_pair(results[n], key, g) for n in order]
            n_ = next((r["n"] for n in order for r in results[n]["breakdowns"].get(key, []) if r["group"] == g), 0)
            rows.append([g, str(n_), *cells])
        lines += markdown_table(["group", "n", *order], rows)
        if f"by_{key}.png" in plots:
            lines += ["", f"![by {title}](by_{key}.png)"]
    lines += ["", "## Most frequent SOC major-group errors", "",
              "Valid predictions in another major group than the target; share = of those errors.", ""]
    rows = [[n, _group_name(e["target_group"]), _group_name(e["predicted_group"]), str(e["n"]),
             f"{100 * e['share']:.1f}%"] for n in order for e in results[n]["major_group_errors"][:5]]
    lines += markdown_table(["predictor", "target group", "predicted group", "n", "share"], rows)
    if "major_group_errors.png" in plots:
        lines += ["", "![major-group errors](major_group_errors.png)"]
    return "\n".join(lines) + "\n"


def _groups_of(results: dict[str, dict], key: str) -> list[str]:
    seen: list[str] = []
    for r in results.values():
        for row in r["breakdowns"].get(key, []):
            if row["group"] not in seen:
                seen.append(row["group"])
    return seen


def _pair(result: dict, key: str, group: str) -> str:
    row = next((r for r in result["breakdowns"].get(key, []) if r["group"] == group), None)
    return "-" if row is None else f"{row['AccEM']:.1f} / {row['AccRM']:.1f}"


# ---- plots -------------------------------------------------------------------------------------------


def write_plots(results: dict[str, dict], out: Path) -> list[str]:
    """PNG plots into ``out``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names, written = list(results), []
    width = 0.8 / max(len(names), 1)

    fig, ax = plt.subplots(figsize=(8, 4))
    for i, n in enumerate(names):
        vals = [results[n].get(m) or 0.0 for m in HEADLINE]
        ci = [results[n]["ci"].get(m) or [v, v] for m, v in zip(HEADLINE, vals)]
        err = np.array([[v - lo, hi - v] for v, (lo, hi) in zip(vals, ci)]).T  # (2, metrics)
        ax.bar(np.arange(len(HEADLINE)) + i * width, vals, width, yerr=err, capsize=2, label=n)
    ax.set_xticks(np.arange(len(HEADLINE)) + width * (len(names) - 1) / 2, HEADLINE)
    ax.set_ylabel("%")
    ax.set_title("Headline metrics (95% bootstrap CI)")
    ax.legend(fontsize=8)
    written.append(_save(fig, out, "metrics.png"))

    for key, title in BREAKDOWNS.items():
        groups = _groups_of(results, key)
        if not groups:
            continue
        fig, ax = plt.subplots(figsize=(8, 4))
        for i, n in enumerate(names):
            by = {r["group"]: r["AccEM"] for r in results[n]["breakdowns"].get(key, [])}
            ax.bar(np.arange(len(groups)) + i * width, [by.get(g, 0.0) for g in groups], width, label=n)
        ax.set_xticks(np.arange(len(groups)) + width * (len(names) - 1) / 2, groups)
        ax.set_ylabel("AccEM %")
        ax.set_title(f"AccEM by {title}")
        ax.legend(fontsize=8)
        written.append(_save(fig, out, f"by_{key}.png"))

    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, n in zip(axes.flat, names):
        errors = results[n]["major_group_errors"][:8][::-1]
        ax.barh([f"{e['target_group']} -> {e['predicted_group']}" for e in errors], [e["n"] for e in errors])
        ax.set_title(n, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("Most frequent SOC major-group errors (target -> predicted)")
    written.append(_save(fig, out, "major_group_errors.png"))
    return written


def _save(fig, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    save_figure(fig, out / name)
    plt.close(fig)
    return name
