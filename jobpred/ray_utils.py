"""Starting or joining Ray the same way from the CLI, the job entry points and the tests; worker niceness;
where a stage's work ran."""

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


def _job_actors() -> dict[str, tuple[str, str | None]]:
    """This job's actors, dead or alive: actor id -> (what it runs, node id), from Ray's state API."""
    import ray
    from ray.util.state import list_actors

    job = ray.get_runtime_context().get_job_id()
    found = list_actors(filters=[("job_id", "=", job)], detail=True, limit=10_000, raise_on_missing_output=False)
    return {a.actor_id: (a.repr_name or a.class_name, a.node_id) for a in found}


class WorkPlacement:
    """Where the work of one stage ran: the driver's node and the node of every actor the stage started
    (vLLM engine replicas, tokenizer and prepare actors, Ray Train workers), read from Ray's state API.

        where = WorkPlacement()       # before the stage
        ...run the stage...
        where.record()                # {"driver": id, "actors": {"MapWorker(...vLLMEngineStageUDF)": [id]},
                                      #  "nodes": {id: {"ip": ..., "head": bool, "resources": [...]}}}

    Only this job's actors count (other jobs on a shared cluster do not show up); a stage that starts Ray
    starts the job, so it has none before. The state API is served by the dashboard, which every cluster
    (and `ray job submit`) has; a local `jobpred run` starts Ray without it, and on one node every actor ran
    on the driver's node anyway. ``record`` is None for a stage that never touched Ray.
    """

    def __init__(self) -> None:
        import ray

        self._before: set[str] | None = set()
        self._error = ""
        if ray.is_initialized() and not _one_node():
            try:
                self._before = set(_job_actors())
            except Exception as err:  # no dashboard, or it timed out: the record says so, the stage runs
                self._before, self._error = None, str(err)

    def record(self) -> dict | None:
        import ray

        if not ray.is_initialized():
            return None
        out: dict = {"driver": ray.get_runtime_context().get_node_id()}
        if _one_node():
            out["actors"] = {"*": [out["driver"]]}  # every actor ran there
        else:
            now = None
            if self._before is not None:
                try:
                    now = _job_actors()
                except Exception as err:
                    self._error = str(err)
            if now is None:
                out["actors"] = None
                out["actors_unknown"] = f"Ray's state API did not answer: {self._error}"[:300]
            else:
                actors: dict[str, set[str]] = {}
                for actor_id, (name, node) in now.items():
                    if actor_id not in self._before and node:
                        actors.setdefault(name, set()).add(node)
                out["actors"] = {name: sorted(ids) for name, ids in sorted(actors.items())}
        nodes = {n["NodeID"]: n for n in ray.nodes()}
        used = {out["driver"], *(n for ids in (out["actors"] or {}).values() for n in ids)}
        out["nodes"] = {n: _describe(nodes[n]) for n in sorted(used) if n in nodes}
        return out


def _one_node() -> bool:
    import ray

    return sum(n["Alive"] for n in ray.nodes()) == 1


def _describe(node: dict) -> dict:
    """A node as the manifest names it: its address, whether it is the head, its custom resources."""
    res = node.get("Resources", {})
    custom = sorted(k for k in res if k not in ("CPU", "GPU", "memory", "object_store_memory")
                    and not k.startswith(("node:", "accelerator_type:")))
    return {"ip": node.get("NodeManagerAddress"), "head": "node:__internal_head__" in res, "resources": custom}
