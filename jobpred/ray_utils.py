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


def job_actors() -> dict[str, tuple[str, str]] | None:
    """Actor id -> (class name, node id) of every actor this Ray job has started, dead ones included; None
    when Ray is not initialised or its state API is not reachable (a local Ray started without a dashboard)."""
    import ray

    if not ray.is_initialized():
        return None
    from ray.util.state import list_actors

    job = ray.get_runtime_context().get_job_id()
    try:
        actors = list_actors(filters=[("job_id", "=", job)], limit=100_000, raise_on_missing_output=False)
    except Exception:  # no dashboard, so no state API: the placement is simply not recorded
        return None
    return {a.actor_id: (a.class_name, a.node_id) for a in actors}


def placement(before: dict[str, tuple[str, str]] | None) -> dict | None:
    """Where the actors started since ``before`` (a :func:`job_actors` snapshot) ran: class name -> sorted
    node ids, and the head node's id; None when the state API cannot say."""
    import ray

    after = job_actors()
    if after is None:
        return None
    before = before or {}  # Ray was started inside the stage: every actor of the job is the stage's
    by_class: dict[str, set[str]] = {}
    for actor_id, (cls, node) in after.items():
        if actor_id not in before and node:
            by_class.setdefault(cls, set()).add(node)
    head = next((n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n.get("Resources", {})), None)
    return {"head_node": head, "actors": {cls: sorted(nodes) for cls, nodes in sorted(by_class.items())}}
