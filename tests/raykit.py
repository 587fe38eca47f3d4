"""A real multi-node Ray cluster on this machine for the tests: a head started with `ray start --head` (and its
dashboard, which serves job submission and the state API), worker nodes joined with `ray start --address`,
each with its own custom resources, and a hard kill of one node (its raylet and every worker it started).

    cluster = LocalCluster(tmp_path, head_cpus=1)
    worker = cluster.add_worker(cpus=2, resources={"gen": 1})
    out = cluster.submit("python", "-m", "pipelines.run", ...)      # `ray job submit`, waits for the end
    cluster.kill(worker)                                            # the node dies as a machine would
    cluster.stop()

`ray stop` would stop every Ray on the machine (the test session's own too), and Ray's processes rename
themselves (``ray::DashboardAgent``, ``VLLM::EngineCore``), so every process of a node is found by an
environment variable that its `ray start` set and that its processes inherit, and by descent from them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MARK = "JOBPRED_TEST_RAY_NODE"  # which test node a process belongs to (inherited from its `ray start`)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    node_id: str
    resources: dict
    mark: str  # the value of MARK in its processes


class LocalCluster:
    """A head (``head_cpus`` logical CPUs, token authentication) on loopback; stopped by :meth:`stop`."""

    def __init__(self, tmp: Path, head_cpus: int = 1, head_resources: dict | None = None) -> None:
        token = tmp / "ray_token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "PATH": f"{BIN}:{os.environ['PATH']}"}
        self.env.pop("RAY_ADDRESS", None)
        # Every port free-picked: another Ray on this machine (the test session's own) holds the defaults,
        # and a dashboard agent that cannot bind leaves the job server with "No available agent".
        self.gcs, dash = free_port(), free_port()
        self.temp = Path("/tmp") / f"jp-ray-{secrets.token_hex(3)}"  # socket paths must stay short
        self.address = f"http://127.0.0.1:{dash}"
        self._start(f"{self.temp.name}-head", "--head", f"--port={self.gcs}", f"--temp-dir={self.temp}", f"--num-cpus={head_cpus}",
                    f"--resources={json.dumps(head_resources or {})}", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dash}", "--include-dashboard=true")
        self.workers: list[Node] = []  # the live worker nodes
        self._joined = 0  # worker nodes started so far (each names its temp dir)

    def _start(self, mark: str, *args: str) -> None:
        ports = (f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                 f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}")
        subprocess.run([BIN / "ray", "start", *args, *ports, "--node-ip-address=127.0.0.1",
                        "--disable-usage-stats"], env={**self.env, MARK: mark}, check=True, capture_output=True,
                       timeout=180)

    def nodes(self) -> list[dict]:
        """`ray.nodes()` of this cluster (asked in a subprocess: this test process has its own Ray)."""
        code = "import json, ray; ray.init(address='auto'); print(json.dumps(ray.nodes()))"
        out = subprocess.run([sys.executable, "-c", code], env={**self.env, "RAY_ADDRESS": f"127.0.0.1:{self.gcs}"},
                             capture_output=True, text=True, timeout=120, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def add_worker(self, cpus: int, resources: dict) -> Node:
        """A worker node with ``cpus`` logical CPUs and ``resources``; returns once the head sees it."""
        before = {n["NodeID"] for n in self.nodes()}
        # Its own temp dir, as on its own machine: nodes sharing one would share runtime_resources/, and one
        # node's runtime-env agent deletes a job's working_dir copy that another node's driver still runs in.
        self._joined += 1
        mark = f"{self.temp.name}-w{self._joined}"
        self._start(mark, f"--address=127.0.0.1:{self.gcs}", f"--num-cpus={cpus}", f"--resources={json.dumps(resources)}",
                    f"--temp-dir={self.temp}-w{self._joined}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            new = [n for n in self.nodes() if n["NodeID"] not in before and n["Alive"]]
            if new:
                node = Node(new[0]["NodeID"], resources, mark)
                self.workers.append(node)
                return node
            time.sleep(2)
        raise RuntimeError(f"worker node with {resources} did not join")

    def kill(self, node: Node) -> None:
        """SIGKILL every process of the node at once (its raylet, Ray workers, their vLLM engine processes),
        as when its machine dies."""
        _kill(lambda mark: mark == node.mark)
        if node in self.workers:
            self.workers.remove(node)

    def submit(self, *cmd: str, env: dict | None = None, job_env: dict | None = None, timeout: int = 1800,
               no_wait: bool = False) -> subprocess.CompletedProcess:
        """`ray job submit --working-dir REPO -- cmd`; ``env``: of the submitting CLI, ``job_env``: of the job
        (its runtime_env). The job agent comes up a few seconds after the head, so only "No available agent"
        is retried, a bounded number of times."""
        args = [BIN / "ray", "job", "submit", "--address", self.address, "--working-dir", str(REPO)]
        if job_env:
            args += ["--runtime-env-json", json.dumps({"env_vars": job_env})]
        if no_wait:
            args.append("--no-wait")
        for _ in range(12):
            out = subprocess.run([*args, "--", *cmd], env={**self.env, **(env or {})}, capture_output=True,
                                 text=True, timeout=timeout)
            if "No available agent" not in out.stdout + out.stderr:
                return out
            time.sleep(5)
        return out

    def job(self, *args: str) -> subprocess.CompletedProcess:
        """`ray job <args> --address ...` (status, logs, stop)."""
        return subprocess.run([BIN / "ray", "job", *args, "--address", self.address], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        _kill(lambda mark: mark.startswith(self.temp.name))  # the head, live workers, leftovers of killed ones
        for temp in self.temp.parent.glob(f"{self.temp.name}*"):  # the head's and every worker's
            shutil.rmtree(temp, ignore_errors=True)


def _kill(belongs) -> None:
    """SIGKILL every process whose MARK satisfies ``belongs``, and their descendants (Ray starts its agents
    with an environment of their own), all found before any is killed: orphans would be re-parented."""
    found = set()
    for proc in psutil.process_iter():
        try:
            mark = proc.environ().get(MARK)
            if mark is not None and belongs(mark):
                found |= {proc, *proc.children(recursive=True)}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    for proc in found:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(found), timeout=30)


def job_id_of(submitted: subprocess.CompletedProcess) -> str:
    """The id `ray job submit --no-wait` printed."""
    found = re.search(r"(raysubmit_\w+)", submitted.stdout + submitted.stderr)
    if not found:
        raise AssertionError(f"no job id in: {submitted.stdout[-2000:]} {submitted.stderr[-2000:]}")
    return found.group(1)


def job_end(cluster: LocalCluster, job_id: str) -> str | None:
    """SUCCEEDED, FAILED or STOPPED once the job has ended; None while it runs."""
    out = cluster.job("status", job_id)
    found = re.search(r"Job '[^']+' (succeeded|failed|was stopped)", out.stdout + out.stderr)  # how the CLI says it
    return {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}[found.group(1)] if found else None


def wait_job(cluster: LocalCluster, job_id: str, timeout: float) -> str:
    """Polls `ray job status` until the job ends; returns SUCCEEDED, FAILED or STOPPED."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_end(cluster, job_id)
        if state:
            return state
        time.sleep(5)
    raise TimeoutError(f"job {job_id} did not end in {timeout} s")


def alive_actor_nodes(cluster: LocalCluster, name_part: str) -> list[str]:
    """Node ids of the live actors whose class or repr name contains ``name_part``, one per actor (`ray list
    actors`)."""
    out = subprocess.run([BIN / "ray", "list", "actors", "--detail", "--format", "json", "--limit", "10000",
                          "--filter", "state=ALIVE", "--address", cluster.address], env=cluster.env,
                         capture_output=True, text=True, timeout=120, check=True)
    return sorted(a["node_id"] for a in json.loads(out.stdout)
                  if name_part in (a.get("repr_name") or "") + " " + (a.get("class_name") or ""))


def running_replicas(cluster: LocalCluster, name_part: str) -> int:
    """How many replicas of the Serve deployments whose name contains ``name_part`` are RUNNING (ready and
    passing health checks), as `serve status` reports them."""
    out = subprocess.run([BIN / "serve", "status", "--address", cluster.address], env=cluster.env,
                         capture_output=True, text=True, timeout=120)
    status = yaml.safe_load(out.stdout) if out.returncode == 0 else None
    apps = (status or {}).get("applications") or {}
    return sum(d.get("replica_states", {}).get("RUNNING", 0) for app in apps.values()
               for name, d in (app.get("deployments") or {}).items() if name_part in name)
