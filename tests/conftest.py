"""Shared fixtures: paths, and one real local Ray instance per test session (started only if a test asks)."""

from __future__ import annotations

from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 4 logical CPUs on this 2-core machine, shared by every test that uses Ray."""
    import ray

    from jobpred.config import RayConfig
    from jobpred.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=4, object_store_memory_mb=512))
    yield ray
    ray.shutdown()
