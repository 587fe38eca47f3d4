"""cluster.yaml has what the Ray launcher needs; a stage runs as a real `ray job submit` against a local head."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_cluster_yaml_has_what_the_launcher_needs():
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    for key in ("cluster_name", "max_workers", "provider", "auth", "available_node_types", "head_node_type",
                "setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cfg, key
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    assert {"gpu_gen", "gpu_train"} <= set(workers)
    for t in workers.values():
        assert t["min_workers"] == 0 and t["max_workers"] >= 1 and "node_config" in t
    assert sum(t["max_workers"] for t in workers.values()) <= cfg["max_workers"] + 2
    assert any('pip install -e ".[gpu]"' in c for c in cfg["setup_commands"])
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head on loopback with token authentication, as a user would run it; stopped afterwards."""
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    # Every port free-picked: another Ray on this machine (the test session's own) holds the defaults,
    # and a dashboard agent that cannot bind leaves the job server with "No available agent".
    gcs, dash, agent = _free_port(), _free_port(), _free_port()
    temp = Path("/tmp") / f"jp-ray-{secrets.token_hex(3)}"  # socket paths must stay short
    subprocess.run([BIN / "ray", "start", "--head", f"--port={gcs}", f"--temp-dir={temp}", "--num-cpus=3",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
                    f"--dashboard-agent-listen-port={agent}", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=180)
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        # `ray stop` would stop every Ray on the machine; stop only this head's processes.
        subprocess.run(["pkill", "-f", str(temp)], capture_output=True, timeout=60)
        time.sleep(3)
        subprocess.run(["pkill", "-9", "-f", str(temp)], capture_output=True, timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def _submit(address: str, env: dict, *cmd: str) -> subprocess.CompletedProcess:
    # The job agent comes up a few seconds after the head; retry only that, a bounded number of times.
    for _ in range(12):
        out = subprocess.run([BIN / "ray", "job", "submit", "--address", address, "--working-dir", str(REPO),
                              "--", *cmd], env=env, capture_output=True, text=True, timeout=600)
        if "No available agent" not in out.stdout + out.stderr:
            return out
        time.sleep(5)
    return out


@pytest.mark.integration
def test_prepare_runs_as_a_ray_job(ray_head, tmp_path):
    address, env = ray_head
    run = tmp_path / "run"
    data = REPO / "tests" / "assets" / "bad_records.jsonl"
    out = _submit(address, env, "python", "-m", "pipelines.prepare", "--config", "configs/local.yaml",
                  "--input", str(data), "--run", str(run), "prepare.engine=ray")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "succeeded" in out.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["read"] == summary["accepted"] + summary["rejected"] == 17
    assert json.loads((run / "manifest.json").read_text())["stages"]["prepare"]["counts"]["examples"] == 3


@pytest.mark.integration
def test_job_submission_needs_the_token(ray_head):
    address, env = ray_head
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN_PATH",)}
    no_token["RAY_AUTH_TOKEN_PATH"] = "/nonexistent/token"
    out = _submit(address, no_token, "python", "-c", "print(1)")
    assert out.returncode != 0
