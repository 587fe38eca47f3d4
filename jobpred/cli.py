"""The `jobpred` command line: thin argument parsing over the library's stage functions.

    jobpred synth     --persons N --seed S (--out PATH | --run RUN_DIR) [KEY=VALUE ...]
    jobpred prepare   [--input PATH] [--format jsonl|parquet|jobhop|karrierewege|decorte] --run RUN_DIR
    jobpred normalize [TITLE ...] [--input FILE] [--top-k K]
    jobpred score     --input FILE [--predictor NAME]        (one JSON object: AccEM, AccRM, ...)
    jobpred evaluate  --config CFG --run RUN_DIR [--baselines-only] [--eval-run OTHER_RUN_DIR]   (then the report)
    jobpred report    --config CFG --run RUN_DIR [--eval-run OTHER_RUN_DIR]
    jobpred reasons   --config CFG --run RUN_DIR              (oracle reasons; resumable)
    jobpred train     --config CFG --run RUN_DIR [--mode joint|two-model] [--dpo]   (LoRA adapters; resumable)
    jobpred run       --config CFG [--run RUN_DIR] [--force STAGE ...]   (all of the above; skips what is done)
    jobpred serve     --config CFG --run RUN_DIR [--host H] [--port P] [--insecure]   (Ray Serve; API keys)

Each stage subcommand is built from its :class:`jobpred.stages.Stage` (options, help) and calls its
``run``, as `jobpred run` and ``python -m pipelines.<stage>`` do. Stages that take a config accept ``--config configs/local.yaml`` and dotted overrides such as
``prepare.seed=3``. Errors in the input or the config print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

from jobpred import taxonomy  # taxonomy.TitleNormalizer: the normaliser loads on first use
from jobpred.config import load_config
from jobpred.eval.score import score_file
from jobpred.pipeline import default_run_dir, run_all
from jobpred.rundir import RunDir
from jobpred.serving.security import require_api_keys
from jobpred.stages import INPUT_FORMATS as FORMATS
from jobpred.stages import STAGE, STAGE_NAMES, STAGES, Option, Stage
from jobpred.storage import check_reachable


def _cmd_stage(stage: Stage, args: argparse.Namespace) -> None:
    """A stage subcommand: its options become dotted overrides or keywords of ``Stage.run``."""
    overrides = list(args.overrides)
    options = {}
    for opt in stage.options:
        value = getattr(args, _dest(opt))
        if opt.override is not None:
            overrides += [f"{opt.override}={value}"] if value is not None else []
        else:
            options[opt.dest] = value
    cfg = load_config(args.config, overrides)
    result = stage.run(cfg, args.run, **options)
    if stage.name == "evaluate":  # `jobpred evaluate` writes the report too (`jobpred run` has it as a stage)
        result.update(STAGE["report"].run(cfg, args.run, eval_run=options["eval_run"]))
    print(json.dumps(result, indent=2, default=str))


def _dest(opt: Option) -> str:
    return opt.flags[0].lstrip("-").replace("-", "_")


def _cmd_normalize(args: argparse.Namespace) -> None:
    norm = taxonomy.TitleNormalizer(min_score=args.min_score, top_k=args.top_k)
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
    print(json.dumps(score_file(args.input, args.predictor, bootstrap=args.bootstrap, seed=args.seed)))


def _cmd_run(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.overrides)
    if args.format and not args.input:
        raise ValueError("--format needs --input")
    run_all(cfg, args.run or default_run_dir(cfg), force=set(args.force or ()), progress=not args.quiet,
            input_path=args.input, input_format=args.format)


def _cmd_serve(args: argparse.Namespace) -> None:
    overrides = list(args.overrides)
    overrides += [f"serve.host={args.host}"] if args.host else []
    overrides += [f"serve.port={args.port}"] if args.port else []
    cfg = load_config(args.config, overrides)
    digests = require_api_keys(cfg.serve, args.insecure)
    from jobpred.serving.deployment import run_server  # ray

    run_server(cfg, RunDir(args.run).path, digests)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobpred", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    for stage in STAGES:
        p = sub.add_parser(stage.name, help=stage.help)
        p.add_argument("--run", *(("--out",) if stage.name == "prepare" else ()), dest="run",
                       required=stage.needs_run, help="run directory" + (" (resumes if killed)" if stage.resumable else ""))
        p.add_argument("--config", help="YAML preset (configs/*.yaml)")
        for opt in stage.options:
            p.add_argument(*opt.flags, dest=_dest(opt), help=opt.help, **opt.kwargs)
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
        p.set_defaults(func=functools.partial(_cmd_stage, stage))

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

    p = sub.add_parser("serve", help="Ray Serve: /v1/predict, OpenAI-compatible routes, LoRA adapters as models")
    p.add_argument("--run", required=True, help="run directory (its adapters/ are served as <model>:<name>)")
    p.add_argument("--config", help="YAML preset (configs/*.yaml); its `serve` and `predict` sections")
    p.add_argument("--host", help="bind address (serve.host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (serve.port; default 8000)")
    p.add_argument("--insecure", action="store_true", help="serve without API keys (never on a shared network)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("run", help="the main job: synth, prepare, reasons, train, evaluate, report (skips "
                       "stages already done with the same config)")
    p.add_argument("--config", required=True, help="YAML preset (configs/*.yaml)")
    p.add_argument("--run", help="run directory (default: runs/<config name>); a killed run continues")
    p.add_argument("--force", action="append", choices=STAGE_NAMES, metavar="STAGE",
                   help=f"redo STAGE and every stage after it (repeatable; {', '.join(STAGE_NAMES)})")
    p.add_argument("--input", help="career records to prepare instead of synthesizing them")
    p.add_argument("--format", choices=FORMATS, help="format of --input (default: from the file suffix)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for where in ("run", "out", "input", "eval_run"):  # a bucket that is not there: said before any work
            if isinstance(getattr(args, where, None), str):
                check_reachable(getattr(args, where))
        args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"jobpred {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
