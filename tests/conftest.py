"""Shared fixtures: paths, an S3 server on 127.0.0.1, and one real local Ray instance per test session
(each started only if a test asks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


BUCKET = "jobpred-test"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's standalone server, as Ray's own tests use) on 127.0.0.1.

    The code under test speaks HTTP S3 to it: its endpoint and credentials go into this process's
    environment the standard way (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), which s3fs, pyarrow and
    polars read, before Ray starts, so Ray's workers inherit them too. Yields the endpoint URL; the bucket
    ``BUCKET`` exists.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's S3 server did not start on {endpoint}") from None
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield endpoint
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """A real local Ray with 4 logical CPUs on this 2-core machine, shared by every test that uses Ray.

    It starts after the S3 server, so its workers see the server's endpoint (they inherit the environment).
    """
    import ray

    from jobpred.config import RayConfig
    from jobpred.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=4, object_store_memory_mb=512))
    yield ray
    ray.shutdown()
