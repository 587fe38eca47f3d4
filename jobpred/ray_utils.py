"""Starting or joining Ray the same way from the CLI, the job entry points and the tests; worker niceness."""

from __future__ import annotations

import os

from jobpred.config import RayConfig

NICENESS_ENV = "RAY_worker_niceness"


def niceness_env(niceness: int | None) -> dict[str, str]:
    """Environment variables that make Ray start a worker at Unix ``niceness`` ({} for None: Ray's default).

    Ray reads ``RAY_worker_niceness`` from a worker's environment when it starts it (its default is 15, which
    on a node shared with normal-priority processes starves the worker). Put it in the ``env_vars`` of the
    worker's runtime_env (training workers, DPO reference actors, Serve replicas).
    """
    return {} if niceness is None else {NICENESS_ENV: str(niceness)}


def init_ray(cfg: RayConfig | None = None) -> None:
    """Join ``cfg.address`` (a cluster, or 'auto' inside `ray job submit`) or start a local Ray.

    Does nothing when Ray is already initialised in this process (the tests share one instance).
    """
    import ray

    if ray.is_initialized():
        return
    cfg = cfg or RayConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": True}
    if cfg.num_cpus:
        kwargs["num_cpus"] = cfg.num_cpus
    if cfg.object_store_memory_mb:
        kwargs["object_store_memory"] = cfg.object_store_memory_mb << 20
    ray.init(**kwargs)
    # Ray Data's progress bars flood logs of non-interactive runs; jobpred prints its own summary.
    ray.data.DataContext.get_current().enable_progress_bars = False
