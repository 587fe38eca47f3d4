"""LoRA settings chosen on validation: train the joint adapter once per variant on the same oracle reasons,
score it on the validation split, and compare every variant with the first on the same examples.

    python tools/sweep_lora.py --config configs/local.yaml --base runs/sweep/base --out runs/sweep \\
        --variant now= --variant r16-all="train.lora.rank=16 train.lora.alpha=32 train.lora.target_modules=[...]"

``--base`` is a run directory whose reasons stage is done (the script runs synth, prepare and reasons there
first if they are not). Each variant gets a copy of it under ``--out/NAME`` (inputs and reasons only), then
`jobpred train --mode joint` and `jobpred evaluate` on ``predict.split=val`` with the joint predictor and
the stay and Markov baselines, with the variant's overrides on both commands. The table (Markdown on
stdout, JSON beside it in ``--out/sweep.json``): strict AccEM / AccRM of joint, the share of its first
choices from the model, the last training step's loss, train seconds, and each variant minus the first,
paired, with a bootstrap 95% CI. The test split is never read. A variant whose run finished before with the
same overrides is reused, so a sweep that was stopped, or one given a further variant, trains only what is new
(the base is not compared: a sweep over another base needs another ``--out``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from compare_predictions import from_model  # tools/, on the path when run as a script

from jobpred.eval.claims import paired_diff, per_example
from jobpred.eval.markdown import markdown_table
from jobpred.rundir import RunDir

JOBPRED = [str(Path(sys.executable).parent / "jobpred")]
LATER = ("adapters", "train", "predictions", "predict", "ray_train", "report")  # not copied from the base
EVAL = ("predict.split=val", "baselines.split=val", "predict.predictors=[joint]", "baselines.predictors=[stay,markov]",
        "predict.judge_reasons=false", "predict.max_examples=null")


def _jobpred(*args: str) -> float:
    """Runs one jobpred command; its seconds."""
    started = time.monotonic()
    subprocess.run([*JOBPRED, *args], check=True)
    return time.monotonic() - started


def _ensure_base(config: str, base: Path) -> None:
    done = RunDir(base).manifest().get("stages", {}) if (base / "manifest.json").exists() else {}
    for stage in ("synth", "prepare", "reasons"):
        if stage not in done:
            _jobpred(stage, "--config", config, "--run", str(base))


def _variant_run(base: Path, out: Path) -> None:
    """A fresh copy of the base's inputs and reasons (no adapters, predictions or reports)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out, ignore=lambda folder, names: LATER if Path(folder) == base else ())
    RunDir(out).forget_stages(["train", "evaluate", "report", "run"])


def _last_loss(run: Path) -> float | None:
    lines = (run / "train" / "joint" / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1]).get("loss") if lines else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--base", type=Path, required=True, help="run directory with (or to get) oracle reasons")
    parser.add_argument("--out", type=Path, required=True, help="one run directory per variant under it")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=OVERRIDES",
                        help="a name and its dotted config overrides (shell words); the first is the reference")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    _ensure_base(args.config, args.base.resolve())
    results = []
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        run = (args.out / name).resolve()
        extra = shlex.split(overrides)
        done = run / "sweep-variant.json"  # written last: a variant with it is finished and reused as it is
        before = json.loads(done.read_text()) if done.exists() else None
        if before is not None and before["overrides"] == extra:
            results.append(before)
            print(f"sweep: {name} done before, reused ({done})", flush=True)
            continue
        _variant_run(args.base.resolve(), run)
        train_s = _jobpred("train", "--config", args.config, "--run", str(run), "--mode", "joint", *extra)
        eval_s = _jobpred("evaluate", "--config", args.config, "--run", str(run), *EVAL, *extra)
        results.append({"name": name, "overrides": extra, "run": str(run), "train_s": round(train_s, 1),
                        "evaluate_s": round(eval_s, 1), "last_loss": _last_loss(run)})
        done.write_text(json.dumps(results[-1], indent=2) + "\n")
        print(f"sweep: {name} trained in {train_s:.0f} s, evaluated in {eval_s:.0f} s", flush=True)
    print("\n".join(_table(results, args.bootstrap)))
    (args.out / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")


def _table(results: list[dict], bootstrap: int) -> list[str]:
    ref = per_example(Path(results[0]["run"]) / "predictions" / "joint.parquet")
    rows = []
    for r in results:
        preds = Path(r["run"]) / "predictions"
        mine = per_example(preds / "joint.parquet")
        d = paired_diff(mine, ref, bootstrap)
        r.update({"n": d["n"], "strict_em": 100 * float(mine["em"].mean()), "strict_rm": 100 * float(mine["rm"].mean()),
                  "from_model": from_model(preds / "joint.parquet"), "minus_first": d,
                  "stay_rm": 100 * float(per_example(preds / "stay.parquet")["rm"].mean()),
                  "markov_rm": 100 * float(per_example(preds / "markov.parquet")["rm"].mean())})
        rows.append([r["name"], " ".join(r["overrides"]) or "(preset)", str(d["n"]), f"{r['from_model']:.0f}%",
                     f"{r['strict_em']:.1f}", f"{r['strict_rm']:.1f}",
                     f"{d['rm']:+.1f} [{d['rm_ci'][0]:+.1f}, {d['rm_ci'][1]:+.1f}]",
                     f"{r['last_loss']:.3f}" if r["last_loss"] is not None else "-", f"{r['train_s']:.0f}",
                     f"{r['stay_rm']:.1f} / {r['markov_rm']:.1f}"])
    return markdown_table(["variant", "overrides", "n", "from the model", "strict AccEM", "strict AccRM",
                           f"- {results[0]['name']}, AccRM [95% CI]", "last loss", "train s",
                           "stay / Markov AccRM"], rows)


if __name__ == "__main__":
    main()
