"""The jobpred Serve application, for `serve run` / `serve deploy` (`jobpred serve` does the same in one step).

Run as (from the repository root; API keys from $JOBPRED_API_KEYS or serve.api_keys_file):
    serve run serve.app:build config=configs/local.yaml run=runs/demo
    serve run serve.app:build config=configs/local.yaml run=runs/demo insecure=true   # no keys (local only)

``build(args)`` is a Serve application builder: it receives the ``key=value`` arguments as a dict. In
Python, ``build_app(cfg, run_dir)`` returns the same Application for ``serve.run``.
"""

from __future__ import annotations

import os

from jobpred.config import JobpredConfig, load_config
from jobpred.serving.security import require_api_keys


def build_app(cfg: JobpredConfig, run_dir: str | os.PathLike, insecure: bool = False):
    """The Serve Application for ``cfg`` and ``run_dir``; refuses to build without API keys unless insecure."""
    from jobpred.serving.deployment import build_application

    return build_application(cfg, run_dir, require_api_keys(cfg.serve, insecure))


def build(args: dict):
    """Builder for `serve run serve.app:build config=CFG run=RUN_DIR [insecure=true] [dotted overrides]`."""
    args = dict(args)
    config, run = args.pop("config", None), args.pop("run", None)
    insecure = str(args.pop("insecure", "false")).lower() in ("1", "true", "yes")
    if not run:
        raise ValueError("serve.app:build needs run=RUN_DIR")
    cfg = load_config(config, [f"{k}={v}" for k, v in args.items()])
    return build_app(cfg, run, insecure=insecure)
