"""Run directories in object storage, against a real S3 server on 127.0.0.1 (moto's, tests/conftest.py).

The tests marked ``cluster`` run every stage and Serve on one bucket run (`make test-cluster`, ~10 min);
the rest run in `make test`.

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
from jobpred.storage import is_uri, local_copy, location, make_dir, remove_tree, write_text_atomic

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


@pytest.fixture(scope="module")
def bucket_run(s3_server, ray_session):
    """A smoke run in the bucket through the reasons stage, for real (vLLM on two examples)."""
    cfg = load_config(SMOKE, ["reasons.max_examples=2", "reasons.commit_every=1", "reasons.max_tokens=32",
                              "reasons.judge_max_tokens=64"])
    run = _prefix()
    stages.STAGE["synth"].run(cfg, run, quiet=True)
    stages.STAGE["prepare"].run(cfg, run)
    return cfg, run, stages.STAGE["reasons"].run(cfg, run)


@pytest.mark.integration
@pytest.mark.cluster
def test_the_reasons_stage_commits_to_the_bucket_and_resumes_from_it(bucket_run):
    """Candidates, judgements and the selection land in the bucket as committed parts; run again, the stage
    finds every example done there and redoes nothing."""
    from jobpred.reasons import store

    cfg, run, first = bucket_run
    assert first["planned"] == 2 and first["oracle"] + first["no_oracle"] + first["error"] == 2
    keys = _keys(run)
    assert {"reasons/outcomes.parquet", "reasons/oracle.parquet", "reasons/config.json"} <= set(keys)
    assert len([k for k in keys if k.startswith("reasons/_commits/")]) >= 2  # one commit per example
    outcomes = pl.read_parquet(f"{run}/reasons/outcomes.parquet")
    planned = store.plan_ids(location(f"{run}/examples/train.parquet"), 2)
    assert sorted(outcomes["example_id"]) == sorted(planned)
    again = stages.STAGE["reasons"].run(cfg, run)
    this_run = RunDir(run).manifest()["stages"]["reasons"]["this_run"]
    assert this_run["candidates"]["todo"] == 0 and this_run["judge"]["todo"] == 0
    assert again["candidates"] == first["candidates"]
    assert pl.read_parquet(f"{run}/reasons/outcomes.parquet").sort("example_id").equals(outcomes.sort("example_id"))


@pytest.mark.integration
@pytest.mark.cluster
def test_ray_train_checkpoints_and_exports_the_adapter_into_the_bucket(bucket_run):
    """Ray Train's storage_path is the bucket; the adapter, its metrics and summary are published there, and
    a second train finds it done. peft loads the node-local copy."""
    from peft import PeftConfig

    cfg, run, first = bucket_run
    if first["oracle"] == 0:  # with local.yaml's bar every judged example is an oracle; guard the premise
        pytest.fail("no oracle rows to train on")
    summary = stages.STAGE["train"].run(cfg, run, mode="joint", dpo=False)["joint"]
    steps = summary["total_steps"]  # 2 oracle rows on 2 workers: one epoch is one step
    assert 1 <= steps <= cfg.train.max_steps and summary["metrics"]["steps"] == steps
    keys = _keys(run)
    assert {"adapters/joint/adapter_config.json", "adapters/joint/adapter_model.safetensors",
            "train/joint/summary.json", "train/joint/metrics.jsonl", "train/joint/examples.parquet"} <= set(keys)
    assert [k for k in keys if k.startswith("train/joint/checkpoint_")], "Ray Train checkpointed elsewhere"
    metrics = [json.loads(line) for line in _get(f"{run}/train/joint/metrics.jsonl").decode().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    assert stages.STAGE["train"].run(cfg, run, mode="joint", dpo=False)["joint"]["skipped"] == "already trained"
    local = local_copy(location(f"{run}/adapters/joint"))
    assert isinstance(local, Path) and PeftConfig.from_pretrained(str(local)).r == cfg.train.lora.rank


@pytest.mark.integration
@pytest.mark.cluster
def test_evaluate_and_report_read_and_write_the_bucket(bucket_run):
    """The LLM predictors load the bucket's adapter through ray.data.llm's own LoRA download (rows name it,
    the engine fetches it from the run's adapters/ prefix); baselines, tables, report and plots land there."""
    cfg, run, _ = bucket_run
    stages.STAGE["train"].run(cfg, run, mode="joint", dpo=False)  # done already if the test above ran
    result = stages.STAGE["evaluate"].run(cfg, run)
    assert set(result["predict"]["predictors"]) == {"zero-shot", "joint"}
    by = result["predict"]["by_predictor"]
    assert by["joint"]["rows"] == cfg.predict.max_examples and by["joint"]["errors"] == 0, by["joint"]
    report = stages.STAGE["report"].run(cfg, run)
    keys = set(_keys(run))
    assert {"predictions/joint.parquet", "predictions/zero-shot.parquet", "predictions/stay.parquet",
            "report/report.md", "report/metrics.json"} <= keys
    assert [k for k in keys if k.startswith("report/") and k.endswith(".png")]
    assert set(report["predictors"]) >= {"joint", "zero-shot", "stay", "markov"}
    assert "joint" in _get(f"{run}/report/report.md").decode()


@pytest.mark.integration
@pytest.mark.cluster
def test_serve_loads_the_bucket_adapter_with_ray_serve_llm_own_loader(bucket_run):
    """`jobpred serve --run s3://...`'s application: the adapter trained into the bucket is a model of the
    OpenAI routes, downloaded by each replica through ``dynamic_lora_loading_path``, and /v1/predict uses it."""
    import socket

    import httpx
    from ray import serve
    from servekit import record

    from jobpred.serving.deployment import build_application, llm_config

    cfg, run, _ = bucket_run
    stages.STAGE["train"].run(cfg, run, mode="joint", dpo=False)  # done already if an earlier test ran
    serve_cfg = load_config(SMOKE, ["predict.max_tokens=48", "predict.answer_max_tokens=16",
                                    "serve.request_timeout_s=120"])
    assert llm_config(serve_cfg, run).lora_config.dynamic_lora_loading_path == f"{run}/adapters"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_application(serve_cfg, run, None), name="jobpred", route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=180) as http:
            base = "smollm2-135m-instruct"
            assert {m["id"] for m in http.get("/v1/models").json()["data"]} == {base, f"{base}:joint"}
            chat = http.post("/v1/chat/completions", json={
                "model": f"{base}:joint", "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": "Name one job."}]})
            assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"].strip(), chat.text
            out = http.post("/v1/predict", params={"predictor": "joint"}, json=record())
            assert out.status_code == 200, out.text
            assert out.json()["adapter"] == "joint" and out.json()["occupation"]["code"]
    finally:
        serve.shutdown()


def test_an_adapter_in_the_bucket_is_merged_on_this_node_and_uploaded(s3_server, tmp_path, monkeypatch):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from jobpred.models import resolve_model
    from jobpred.predict.merged import MARKER, merged_model

    monkeypatch.setenv("JOBPRED_CACHE", str(tmp_path / "cache"))
    base_path = resolve_model("smollm2-135m-instruct")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(tmp_path / "joint")
    run = location(_prefix())
    for f in (tmp_path / "joint").iterdir():
        (run / "adapters" / "joint" / f.name).write_bytes(f.read_bytes())
    out = merged_model(base_path, str(run / "adapters" / "joint"), run / "merged")
    assert out == str(run / "merged" / "joint")
    keys = _keys(str(run))
    assert {"merged/joint/config.json", "merged/joint/model.safetensors", f"merged/joint/{MARKER}"} <= set(keys)
    assert merged_model(base_path, str(run / "adapters" / "joint"), run / "merged") == out  # marker: no rebuild
    merged = AutoModelForCausalLM.from_pretrained(str(local_copy(location(out))))
    assert merged.config.num_hidden_layers == model.config.num_hidden_layers


def test_a_bucket_prefix_is_copied_to_this_node_once_per_content(s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("JOBPRED_CACHE", str(tmp_path / "cache"))
    root = location(_prefix()) / "adapters" / "a"
    (root / "adapter_config.json").write_text('{"r": 8}')
    (root / "sub" / "w.bin").write_bytes(b"1")
    first = local_copy(root)
    assert (first / "adapter_config.json").read_text() == '{"r": 8}' and (first / "sub" / "w.bin").read_bytes() == b"1"
    assert local_copy(root) == first  # unchanged objects: the same copy, not downloaded again
    (root / "adapter_config.json").write_text('{"r": 16}')  # retrained at the same URI
    second = local_copy(root)
    assert second != first and (second / "adapter_config.json").read_text() == '{"r": 16}'
    with pytest.raises(FileNotFoundError):
        local_copy(location(_prefix()))


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
    for args, says in ((["prepare", "--out", "gs://bucket/run"], "gcsfs"),
                       (["prepare", "--out", "http://host/run"], "not http://"),
                       (["run", "--config", f"{REPO}/configs/smoke.yaml", "--run", "s3://no-such-bucket/run"],
                        "bucket 'no-such-bucket' does not exist"),
                       (["serve", "--insecure", "--run", "s3://no-such-bucket/run"], "'no-such-bucket'")):
        out = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "gs:").exists()
