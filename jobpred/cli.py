"""The `jobpred` command line: thin argument parsing over the library's stage functions.

    jobpred synth     --persons N --seed S --out PATH [KEY=VALUE ...]
    jobpred prepare   --input PATH [--format jsonl|parquet|jobhop|karrierewege|decorte] --out RUN_DIR
    jobpred normalize [TITLE ...] [--input FILE] [--top-k K]
    jobpred score     --input FILE [--predictor NAME]        (one JSON object: AccEM, AccRM, ...)
    jobpred evaluate  --config CFG --run RUN_DIR --baselines-only
    jobpred reasons   --config CFG --run RUN_DIR              (oracle reasons; resumable)
    jobpred train     --config CFG --run RUN_DIR [--mode joint|two-model] [--dpo]   (LoRA adapters; resumable)

Stages that take a config accept ``--config configs/local.yaml`` and dotted overrides such as
``prepare.seed=3``. Errors in the input or the config print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobpred.config import load_config

FORMATS = ("jsonl", "parquet", "jobhop", "karrierewege", "decorte")


def _cmd_synth(args: argparse.Namespace) -> None:
    from jobpred.data.synth import write_synthetic

    overrides = list(args.overrides)
    if args.persons is not None:
        overrides.append(f"synth.persons={args.persons}")
    if args.seed is not None:
        overrides.append(f"synth.seed={args.seed}")
    cfg = load_config(args.config, overrides)
    print(json.dumps(write_synthetic(cfg.synth, args.out, progress=not args.quiet)))


def _cmd_prepare(args: argparse.Namespace) -> None:
    from jobpred.data.prepare import prepare

    overrides = list(args.overrides) + ([f"prepare.engine={args.engine}"] if args.engine else [])
    cfg = load_config(args.config, overrides)
    fmt = args.format or ("parquet" if Path(args.input).suffix == ".parquet" else "jsonl")
    summary = prepare(args.input, args.out, cfg.prepare, cfg.ray, input_format=fmt)
    print(json.dumps(summary, indent=2))


def _cmd_normalize(args: argparse.Namespace) -> None:
    from jobpred.taxonomy import TitleNormalizer

    norm = TitleNormalizer(min_score=args.min_score, top_k=args.top_k)
    titles: list[str] = list(args.titles)
    if args.input:
        stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", errors="replace")
        with stream:
            titles.extend(line.rstrip("\n") for line in stream if line.strip())
    if not titles:
        raise ValueError("give titles as arguments or --input FILE (- for standard input)")
    for title in titles:
        m = norm(title)
        out = {"input": title, "code": m.code, "title": m.title, "score": round(m.score, 4),
               "method": m.method, "candidates": [c.__dict__ for c in m.candidates[: args.top_k]]}
        if m.code is None:
            out["no_match"] = f"no O*NET title scored at least {args.min_score}"
        print(json.dumps(out, ensure_ascii=False))


def _cmd_score(args: argparse.Namespace) -> None:
    from jobpred.eval.score import score_file

    print(json.dumps(score_file(args.input, args.predictor, bootstrap=args.bootstrap, seed=args.seed)))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from jobpred.eval import run_baselines, run_report

    if not args.baselines_only:
        raise ValueError("LLM predictors are not available yet (they come with the prediction stage); "
                         "run with --baselines-only")
    cfg = load_config(args.config, args.overrides)
    baselines = run_baselines(cfg, args.run)
    report = run_report(args.run, bootstrap=cfg.baselines.bootstrap_samples, seed=cfg.baselines.bootstrap_seed)
    print(json.dumps({"baselines": baselines, **report}, indent=2))


def _cmd_reasons(args: argparse.Namespace) -> None:
    from jobpred.reasons import run

    print(json.dumps(run(load_config(args.config, args.overrides), args.run), indent=2, default=str))


def _cmd_train(args: argparse.Namespace) -> None:
    from jobpred.train import run

    result = run(load_config(args.config, args.overrides), args.run, mode=args.mode, dpo=args.dpo)
    print(json.dumps(result, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobpred", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic career records grounded in O*NET")
    p.add_argument("--persons", type=int, help="number of persons (synth.persons)")
    p.add_argument("--seed", type=int, help="random seed (synth.seed)")
    p.add_argument("--out", required=True, help="PATH.jsonl, or a directory for Parquet parts")
    p.add_argument("--config", help="YAML preset (configs/*.yaml)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("prepare", help="validate records, normalise titles, build and split examples")
    p.add_argument("--input", required=True, help="a .jsonl/.parquet file or a directory of them")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from the file suffix)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", help="YAML preset (configs/*.yaml)")
    p.add_argument("--engine", choices=("ray", "local"), help="prepare.engine")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("normalize", help="map raw job titles to O*NET-SOC 2019 (JSON lines out)")
    p.add_argument("titles", nargs="*", metavar="TITLE")
    p.add_argument("--input", help="file with one title per line (- for standard input)")
    p.add_argument("--top-k", type=int, default=3, help="candidates per title")
    p.add_argument("--min-score", type=float, default=0.86, help="below this score: no match")
    p.set_defaults(func=_cmd_normalize)

    p = sub.add_parser("score", help="AccEM, AccRM (+ Acc@k, MRR, CIs) of a predictions file, as JSON")
    p.add_argument("--input", required=True,
                   help="predictions table (.parquet/.jsonl) or the paper's JSON / JSON Lines format")
    p.add_argument("--predictor", help="predictor NAME to score in the paper's format")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("evaluate", help="run predictors on a run directory and write its report")
    p.add_argument("--run", required=True, help="run directory (after `jobpred prepare`)")
    p.add_argument("--config", help="YAML preset (configs/*.yaml); its `baselines` section")
    p.add_argument("--baselines-only", action="store_true",
                   help="only the baselines (popular, stay, markov, gru); required until LLM predictors exist")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("reasons", help="oracle reasons: teacher candidates, LLM judge, selection, DPO pairs")
    p.add_argument("--run", required=True, help="run directory (after `jobpred prepare`); resumes if killed")
    p.add_argument("--config", help="YAML preset (configs/*.yaml); its `reasons` section")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_cmd_reasons)

    p = sub.add_parser("train", help="LoRA fine-tuning on oracle reasons with Ray Train (SFT, then DPO)")
    p.add_argument("--run", required=True, help="run directory (after `jobpred reasons`); resumes if killed")
    p.add_argument("--config", help="YAML preset (configs/*.yaml); its `train` section")
    p.add_argument("--mode", choices=("joint", "two-model"), help="train.mode (default: the config's)")
    p.add_argument("--dpo", action="store_true", default=None, help="DPO after SFT (train.dpo.enabled)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"jobpred {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
