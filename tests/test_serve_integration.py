"""The Serve application for real: Ray Serve + ray.serve.llm + vLLM's CPU build + the default model + a LoRA
adapter from a run directory, on the session's shared Ray. Called with the OpenAI Python client and raw HTTP;
Serve is shut down at the end (Ray stays up for the other tests)."""

from __future__ import annotations

import socket

import httpx
import pytest
from servekit import INJECTION_TITLE, adapter_run, record

from jobpred.config import load_config

KEY = "integration-key-0123456789"
BASE = "smollm2-135m-instruct"
OVERRIDES = ["predict.max_tokens=48", "predict.answer_max_tokens=16", "serve.request_timeout_s=120"]

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_session):
    from ray import serve

    from jobpred.serving.deployment import build_application
    from jobpred.serving.security import digest

    run_dir = adapter_run(tmp_path_factory.mktemp("serve"), ("joint",))
    cfg = load_config("configs/local.yaml", OVERRIDES)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_application(cfg, run_dir, frozenset({digest(KEY)})), name="jobpred", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server, timeout=180) as c:
        yield c


def _auth():
    return {"Authorization": f"Bearer {KEY}"}


def test_openai_client_lists_adapters_and_chats_with_one(server):
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert ids == {BASE, f"{BASE}:joint"}
    for model in (BASE, f"{BASE}:joint"):
        out = client.chat.completions.create(model=model, max_tokens=8, temperature=0,
                                             messages=[{"role": "user", "content": "Name one job."}])
        assert out.model == model and out.choices[0].message.content.strip()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong-key-0123456789", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=f"{BASE}:nope", messages=[{"role": "user", "content": "hi"}])


def test_keys_and_bad_bodies(http):
    assert http.get("/healthz").status_code == 200
    assert http.post("/v1/predict", json=record()).status_code == 401
    assert http.get("/v1/models").status_code == 401
    bad = [b"{not json", b'{"person_id": "p"}', b'{"person_id": "p", "experience": [{"start": "2010"}]}',
           b'{"person_id": "p", "experience": [{"title": 5, "start": "2010"}]}', b"[]"]
    for body in bad:
        r = http.post("/v1/predict", content=body, headers={**_auth(), "content-type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    r = http.post("/v1/predict", content=b"x" * 1_100_000, headers=_auth())
    assert r.status_code == 413
    r = http.post("/v1/chat/completions", json={"model": BASE, "messages": "nope"}, headers=_auth())
    assert r.status_code == 400


def test_injection_record_gets_a_valid_onet_answer(http):
    from jobpred.taxonomy import Taxonomy

    taxonomy = Taxonomy.load()
    rec = record("inj", titles=("Registered Nurse", INJECTION_TITLE))
    for predictor in ("joint", "zero-shot"):
        r = http.post("/v1/predict", params={"predictor": predictor}, json=rec, headers=_auth())
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["person_id"] == "inj" and body["predictor"] == predictor
        assert body["occupation"]["code"] in taxonomy
        assert body["occupation"]["title"] == taxonomy.title(body["occupation"]["code"])
        assert all(t["code"] in taxonomy for t in body["top_k"] + body["related"])
        # related: O*NET's Related Occupations of the first choice (93 occupations have none listed)
        assert bool(body["related"]) == bool(list(taxonomy.related(body["occupation"]["code"])))
        assert body["adapter"] == ("joint" if predictor == "joint" else None) and body["latency_ms"] > 0


def test_batch_and_history_budget(http):
    long = record("long", titles=tuple(f"Staff Nurse {i}" for i in range(40)))
    for job in long["experience"]:
        job["description"] = "Cared for patients on a busy surgical ward; " * 6
    r = http.post("/v1/predict", json={"records": [record("a"), long], "predictor": "zero-shot"}, headers=_auth())
    assert r.status_code == 200, r.text
    short, cut = r.json()["predictions"]
    assert short["history_jobs_dropped"] == 0 and 0 < cut["history_jobs_dropped"] < 40


def test_metrics_report_requests(http):
    text = http.get("/metrics", headers=_auth()).text
    assert 'route="/v1/predict",status="200"' in text and 'status="422"' in text


def test_serve_run_builder_refuses_without_keys_and_builds_the_graph(tmp_path, monkeypatch):
    """`serve run serve.app:build config=... run=...`: the Application graph (ingress -> LLMServer with LoRA).
    No Serve is started, but building the graph imports ray.serve.llm and vLLM (a minute on a busy machine)."""
    from conftest import REPO

    from jobpred.serving.security import digest

    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.delenv("JOBPRED_API_KEYS", raising=False)
    from serve.app import build

    (tmp_path / "adapters" / "joint").mkdir(parents=True)
    (tmp_path / "adapters" / "joint" / "adapter_config.json").write_text('{"r": 8}')
    args = {"config": str(REPO / "configs" / "local.yaml"), "run": str(tmp_path)}
    with pytest.raises(ValueError, match="no API key"):
        build(args)
    monkeypatch.setenv("JOBPRED_API_KEYS", KEY)
    app = build({**args, "serve.max_replicas": "2"})
    ingress = app._bound_deployment
    assert ingress.name == "JobpredIngress"
    assert KEY not in repr(ingress.init_kwargs) and ingress.init_kwargs["digests"] == frozenset({digest(KEY)})
    (server,) = ingress.init_args[0].values()
    llm = server._bound_deployment.init_kwargs["llm_config"]
    assert llm.lora_config is not None and llm.engine_kwargs["enable_lora"] and llm.engine_kwargs["max_lora_rank"] == 8
    auto = server._bound_deployment._deployment_config.autoscaling_config
    assert (auto.min_replicas, auto.max_replicas) == (1, 2)


def test_ranked_answers_are_refused_by_replicas_with_lora_on(http):
    """vLLM 0.32 cannot compute prompt logprobs with LoRA on (its engine dies: vllm-project/vllm#29955), so a
    server whose replicas serve adapters refuses ``?answer_mode=ranked`` with a 422 -- and keeps serving."""
    rec = record("ranked", titles=("Registered Nurse", "Charge Nurse"))
    r = http.post("/v1/predict", params={"predictor": "zero-shot", "answer_mode": "ranked"}, json=rec, headers=_auth())
    assert r.status_code == 422 and r.json()["error"]["param"] == "answer_mode", r.text
    assert "LoRA" in r.json()["error"]["message"]
    bad = http.post("/v1/predict", params={"answer_mode": "best"}, json=rec, headers=_auth())
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "answer_mode"
    ok = http.post("/v1/predict", params={"predictor": "zero-shot", "answer_mode": "free"}, json=rec, headers=_auth())
    assert ok.status_code == 200, ok.text
