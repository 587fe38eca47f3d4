"""The main job on a multi-node Ray cluster of this machine (issue 17): a head and two worker nodes started
with `ray start`, each worker offering the custom resources ``gen`` and ``train``; the run directory in the
S3 server of the test session. configs/smoke-cluster.yaml places every vLLM engine on a ``gen`` node and the
Ray Train workers on ``train`` nodes; the head runs only the job's driver and light operators.

- the smoke preset's whole `jobpred run`, submitted with `ray job submit`: the manifest records where each
  stage's actors ran, and the LLM stages ran on worker nodes, not on the head;
- the reasons stage, as its own Ray job, with the worker node that runs the teacher's engine killed between
  two of its commits: submitted again (if Ray did not already carry it through), it finishes, and every
  example is accounted for exactly once (train and evaluate after it are the first test's, not repeated);
- `jobpred serve`, itself a Ray job, with two engine replicas on two worker nodes under a bounded request
  loop on loopback: one node is killed mid-load and a fresh one joins (as an autoscaler would replace it);
  requests keep being answered (a 503 while a replica is missing is acceptable, a hang or a 500 is not),
  Serve replaces the replica, and the test prints how many requests failed and for how long.
"""

from __future__ import annotations

import threading
import time

import httpx
import polars as pl
import pytest
from conftest import BUCKET
from raykit import LocalCluster, alive_actor_nodes, free_port, job_end, job_id_of, running_replicas, wait_job
from servekit import record

from jobpred.reasons.store import PartStore
from jobpred.rundir import RunDir
from jobpred.schema import CANDIDATES_SCHEMA, JUDGEMENTS_SCHEMA, REASON_ERRORS_SCHEMA
from jobpred.storage import location

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

PRESET = "configs/smoke-cluster.yaml"
ENGINE = "vLLMEngineStageUDF"  # in the name of every ray.data.llm engine replica actor
TRAIN_WORKER = "RayTrainWorker"
WORKER = {"gen": 1, "train": 1}  # the custom resources of every worker node


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    """Head (1 CPU) + two worker nodes (3 logical CPUs, ``gen`` and ``train`` each). The nodes inherit this
    process's environment, so the job's driver and workers reach the S3 server the standard way."""
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), head_cpus=1)
    try:
        _two_workers(c)
        yield c
    finally:
        c.stop()


def _two_workers(c: LocalCluster) -> None:
    """Worker nodes up to two (a test that killed one leaves the next a replacement, as an autoscaler would)."""
    while len(c.workers) < 2:
        c.add_worker(cpus=3, resources=WORKER)


def _run(uri: str, *overrides: str, stage: str = "run") -> tuple[str, ...]:
    return ("python", "-m", f"pipelines.{stage}", "--config", PRESET, "--run", uri, *overrides)


def _manifest(uri: str) -> dict:
    return RunDir(uri).manifest()


def _placed(record: dict, name_part: str) -> list[dict]:
    """The nodes (as the manifest describes them) of a stage's actors whose name contains ``name_part``."""
    ids = {n for name, nodes in (record["actors"] or {}).items() if name_part in name for n in nodes}
    return [record["nodes"][n] for n in sorted(ids)]


@pytest.fixture(scope="module")
def smoke_run(cluster):
    """The smoke preset's whole `jobpred run`, submitted to the cluster; (run URI, `ray job submit` output)."""
    c = cluster
    uri = f"s3://{BUCKET}/multinode/smoke"
    return uri, c.submit(*_run(uri))


def test_the_smoke_job_runs_on_the_cluster_and_says_where(smoke_run):
    uri, out = smoke_run
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "succeeded" in out.stdout
    manifest = _manifest(uri)
    assert "report" in manifest["stages"]
    placement = {stage: rec["placement"] for stage, rec in manifest["stages"]["run"]["stages"].items()}
    for stage in ("reasons", "evaluate"):
        engines = _placed(placement[stage], ENGINE)
        assert engines, (stage, placement[stage])
        assert all(not n["head"] and "gen" in n["resources"] for n in engines), (stage, engines)
    trainers = _placed(placement["train"], TRAIN_WORKER)
    assert trainers and all(not n["head"] and "train" in n["resources"] for n in trainers), placement["train"]
    driver = placement["reasons"]["nodes"][placement["reasons"]["driver"]]
    assert driver["head"]  # `ray job submit` runs the driver on the head


# Its own pytest limit: the whole job after a kill (rest of reasons, train, evaluate) took 14-15 min in two runs
# on 2026-12-07, the teacher's engine started three times after the kill; the reasons stage alone is the point.
@pytest.mark.timeout(2700)
def test_a_worker_node_killed_mid_reasons_loses_and_repeats_nothing(cluster):
    c = cluster
    _two_workers(c)
    uri = f"s3://{BUCKET}/multinode/killed"
    for stage in ("synth", "prepare"):  # light stages, each its own job, before the one that is interrupted
        out = c.submit(*_run(uri, stage=stage))
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    # enough examples, in small engine batches and commits, that the kill lands between two commits
    job = _run(uri, "reasons.max_examples=16", "reasons.commit_every=2", "reasons.teacher.batch_size=2",
               "reasons.teacher.max_concurrent_batches=1", stage="reasons")
    first = job_id_of(c.submit(*job, no_wait=True))
    store = PartStore(location(uri) / "reasons")
    deadline = time.monotonic() + 420  # the engine's start: about a minute
    while not (store.markers.exists() and len(store.done("candidates")) >= 2):
        assert time.monotonic() < deadline, "no reasons commit in 7 min"
        time.sleep(2)
    engine_nodes = alive_actor_nodes(c, ENGINE)
    victims = [w for w in c.workers if w.node_id in engine_nodes]
    assert victims, f"no worker node runs the teacher's engine: {engine_nodes}"
    done_at_kill = len(store.done("candidates"))
    c.kill(victims[0])
    started = time.monotonic()
    state = wait_job(c, first, timeout=1800)  # the end, not a hang
    attempts = [f"{state} {time.monotonic() - started:.0f} s after the kill"]
    if state != "SUCCEEDED":  # the user's recovery: the same command again
        again = c.submit(*job)
        attempts.append("SUCCEEDED" if again.returncode == 0 else again.stdout[-3000:])
    print(f"\nkilled node {victims[0].node_id[:8]} at {done_at_kill} examples committed; job: {attempts}")
    assert attempts[-1].startswith("SUCCEEDED"), attempts

    manifest = _manifest(uri)
    planned = manifest["stages"]["reasons"]["counts"]["planned"]
    assert done_at_kill < planned, "the kill landed after the candidates were all committed"
    cands = store.scan("candidates", CANDIDATES_SCHEMA).collect()
    assert cands["candidate_id"].is_unique().all()
    errors = store.scan("errors", REASON_ERRORS_SCHEMA).filter(pl.col("scope") == "example").collect()
    assert not set(cands["example_id"]) & set(errors["example_id"])
    assert len(set(cands["example_id"]) | set(errors["example_id"])) == planned
    judged = store.scan("judgements", JUDGEMENTS_SCHEMA).collect()
    assert judged.select("candidate_id", "criterion", "attempt").is_unique().all()
    outcomes = pl.read_parquet(str(location(uri) / "reasons" / "outcomes.parquet"))
    assert outcomes["example_id"].is_unique().all() and outcomes.height == planned


def _load(url: str, key: str, stop, log: list) -> None:
    """One client: /v1/predict back to back until ``stop`` is set; (start, seconds, status) per request,
    status "timeout" when no answer came within the server's own deadline and a margin."""
    with httpx.Client(base_url=url, timeout=200, headers={"Authorization": f"Bearer {key}"}) as http:
        while not stop.is_set():
            t = time.monotonic()
            try:
                status = http.post("/v1/predict", params={"predictor": "joint"}, json=record()).status_code
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.TransportError as err:
                status = f"transport:{type(err).__name__}"
            log.append((t, time.monotonic() - t, status))
            if status != 200:
                time.sleep(0.5)


def test_serve_across_nodes_survives_a_node_kill(cluster, smoke_run):
    c = cluster
    _two_workers(c)
    uri, out = smoke_run
    assert out.returncode == 0, "the smoke job must have trained the adapter this serves"
    port, key = free_port(), "multinode-test-key-0123"
    # gen 0.6 per replica on nodes with gen 1: at most one replica per node, so the two are on two nodes
    serve_job = job_id_of(c.submit(
        "jobpred", "serve", "--config", PRESET, "--run", uri, "--port", str(port),
        "serve.min_replicas=2", "serve.max_replicas=2", "serve.proxy_location=HeadOnly",
        "serve.engine.placement_bundles=[{CPU: 0.5, gen: 0.6}]", "serve.request_timeout_s=120",
        "predict.max_tokens=32", "predict.answer_max_tokens=16",
        job_env={"JOBPRED_API_KEYS": key}, no_wait=True))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        while True:
            assert time.monotonic() < deadline and not job_end(c, serve_job), c.job("logs", serve_job).stdout[-4000:]
            try:
                if httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200 \
                        and running_replicas(c, "LLMServer") == 2:
                    break
            except httpx.TransportError:
                pass
            time.sleep(5)
        replicas = alive_actor_nodes(c, "LLMServer")
        assert len(set(replicas)) == 2 and set(replicas) <= {w.node_id for w in c.workers}, replicas

        stop, log = threading.Event(), []
        clients = [threading.Thread(target=_load, args=(url, key, stop, log)) for _ in range(2)]
        for t in clients:
            t.start()
        time.sleep(30)
        victim = next(w for w in c.workers if w.node_id == replicas[0])
        killed_at = time.monotonic()
        c.kill(victim)
        fresh = c.add_worker(cpus=3, resources=WORKER)  # the autoscaler's replacement
        recovered_at = None
        while time.monotonic() - killed_at < 600:
            nodes = alive_actor_nodes(c, "LLMServer")
            if len(nodes) == 2 and victim.node_id not in nodes and running_replicas(c, "LLMServer") == 2 and \
                    any(s == 200 and t0 > killed_at for t0, _, s in list(log)):
                recovered_at = time.monotonic()
                break
            time.sleep(5)
        served_from = len(log)
        time.sleep(30 if recovered_at else 0)  # answered on the new replica set for a while
        stop.set()
        for t in clients:
            t.join(timeout=250)
    finally:
        c.job("stop", serve_job)
    failed = [(t0, s) for t0, _, s in log if s != 200]
    by_status: dict = {}
    for _, s in failed:
        by_status[s] = by_status.get(s, 0) + 1
    window = (max(t0 for t0, _ in failed) - min(t0 for t0, _ in failed)) if failed else 0.0
    report = {"requests": len(log), "failed": len(failed), "failed_by_status": by_status,
              "failure_window_s": round(window, 1), "longest_request_s": round(max(d for _, d, _ in log), 1),
              "replaced_in_s": round(recovered_at - killed_at, 1) if recovered_at else None,
              "new_node": fresh.node_id[:8], "after_replacement": [s for _, _, s in log[served_from:]]}
    print(f"\nServe across nodes, one node killed under load: {report}")
    assert recovered_at is not None, report  # Serve replaced the replica, and answered from it
    assert all(s == 503 for _, s in failed), report  # a 503 while a replica is missing; no 500, no hang
    assert any(s == 200 and t0 > killed_at for t0, _, s in log), report
    assert log[served_from:] and all(s == 200 for _, _, s in log[served_from:]), report  # both replicas serve
