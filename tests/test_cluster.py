"""cluster.yaml has what the Ray launcher needs; a stage runs as a real `ray job submit` against a local head."""

import json

import pytest
import yaml
from raykit import REPO, LocalCluster


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


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head on loopback with token authentication, as a user would run it; stopped afterwards."""
    cluster = LocalCluster(tmp_path, head_cpus=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.integration
def test_prepare_runs_as_a_ray_job(ray_head, tmp_path):
    run = tmp_path / "run"
    data = REPO / "tests" / "assets" / "bad_records.jsonl"
    out = ray_head.submit("python", "-m", "pipelines.prepare", "--config", "configs/local.yaml",
                  "--input", str(data), "--run", str(run), "prepare.engine=ray")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "succeeded" in out.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["read"] == summary["accepted"] + summary["rejected"] == 17
    assert json.loads((run / "manifest.json").read_text())["stages"]["prepare"]["counts"]["examples"] == 3


@pytest.mark.integration
def test_job_submission_needs_the_token(ray_head):
    out = ray_head.submit("python", "-c", "print(1)", env={"RAY_AUTH_TOKEN_PATH": "/nonexistent/token"})
    assert out.returncode != 0
