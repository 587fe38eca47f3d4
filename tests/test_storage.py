"""Run directories in object storage, against a real S3 server on 127.0.0.1 (moto's, tests/conftest.py).

The code under test speaks HTTP S3 to the server through s3fs, pyarrow and polars; nothing in the file
system layer is patched. What each test checks is read back with boto3, an S3 client of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest
from conftest import BUCKET, REPO

from jobpred import stages
from jobpred.config import load_config
from jobpred.rundir import RunDir
from jobpred.storage import is_uri, location, make_dir, remove_tree, write_text_atomic

SMOKE = str(REPO / "configs" / "smoke.yaml")


def _prefix() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"


def _keys(uri: str) -> list[str]:
    import boto3

    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return sorted(o["Key"].removeprefix(prefix + "/") for page in pages for o in page.get("Contents", []))


def _get(uri: str) -> bytes:
    import boto3

    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_location_is_a_local_absolute_path_or_a_bucket_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert location("runs/x") == tmp_path / "runs" / "x" and isinstance(location("runs/x"), Path)
    assert location("file:///tmp/a") == Path("/tmp/a")
    s3 = location("s3://bucket/runs/x")
    assert is_uri(s3) and is_uri("s3://b/x") and not is_uri(tmp_path) and not is_uri(location("r"))
    assert str(s3 / "examples") == "s3://bucket/runs/x/examples"  # what Ray Data and polars are given
    for bad, named in (("http://host/run", "http://"), ("ftp://host/run", "ftp://")):
        with pytest.raises(ValueError, match=named):
            location(bad)
    assert not (tmp_path / "s3:").exists()


def test_small_files_and_directories_in_the_bucket(s3_server):
    root = location(_prefix())
    write_text_atomic(root / "a" / "manifest.json", '{"x": 1}')
    make_dir(root / "empty")  # an empty table directory still exists (as its .keep object)
    assert json.loads(_get(str(root / "a" / "manifest.json"))) == {"x": 1}
    assert (root / "empty").exists() and _keys(str(root)) == ["a/manifest.json", "empty/.keep"]
    remove_tree(root / "a")
    remove_tree(root / "never-written")  # missing: not an error
    assert _keys(str(root)) == ["empty/.keep"]


def test_synth_and_prepare_write_the_same_run_in_a_bucket_as_on_disk(s3_server, ray_session, tmp_path):
    """Ray Data's workers write the prepare parts to the bucket; every table matches the local run's."""
    cfg = load_config(SMOKE)
    bucket_run, local_run = _prefix(), tmp_path / "local"
    for run in (bucket_run, local_run):
        stages.STAGE["synth"].run(cfg, run, quiet=True)
        summary = stages.STAGE["prepare"].run(cfg, run)
        assert summary["read"] == cfg.synth.persons
    keys = _keys(bucket_run)
    assert {"manifest.json", "summary.json", "rejected.jsonl", "input/persons.jsonl",
            "examples/train.parquet", "examples/val.parquet", "examples/test.parquet"} <= set(keys)
    assert not [k for k in keys if k.startswith("_prepare_parts/")]  # the Ray Data parts were cleaned up
    manifest = json.loads(_get(f"{bucket_run}/manifest.json"))
    assert set(manifest["stages"]) == {"synth", "prepare"}
    assert RunDir(bucket_run).output("prepare", "test") == location(f"{bucket_run}/examples/test.parquet")
    for split in ("train", "val", "test"):
        theirs = pl.read_parquet(f"{bucket_run}/examples/{split}.parquet")
        assert theirs.equals(pl.read_parquet(local_run / "examples" / f"{split}.parquet")), split
    assert _get(f"{bucket_run}/rejected.jsonl") == (local_run / "rejected.jsonl").read_bytes()


def test_stages_that_cannot_use_a_bucket_yet_say_so_before_any_work(s3_server):
    cfg = load_config(SMOKE)
    run = _prefix()
    for name in ("reasons", "train", "evaluate", "report"):
        with pytest.raises(ValueError, match=f"stage {name}: a run directory in object storage"):
            stages.STAGE[name].run(cfg, run)
    assert _keys(run) == []


def test_the_cli_prepares_into_a_bucket_and_refuses_what_it_cannot_do(s3_server, tmp_path):
    """The user's commands: `jobpred synth/prepare --run s3://...` (credentials from the environment)."""
    run = _prefix()
    cli = [sys.executable, "-m", "jobpred.cli"]
    for args in (["synth", "--run", run, "--persons", "30", "--quiet"],
                 ["prepare", "--out", run, "--engine", "local"]):
        out = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["read"] == 30
    assert "examples/test.parquet" in _keys(run)
    for args, says in ((["train", "--run", run], "not supported for this stage yet"),
                       (["prepare", "--out", "gs://bucket/run"], "gcsfs"),
                       (["prepare", "--out", "http://host/run"], "not http://")):
        out = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "gs:").exists()
