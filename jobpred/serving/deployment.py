"""The Ray Serve side: ray.serve.llm engine replicas with LoRA from the run directory, and the domain ingress.

    app = build_application(cfg, run_dir, digests)       # a Serve Application
    serve.run(app, name="jobpred", route_prefix="/")

Graph: HTTP proxy -> ``JobpredIngress`` (FastAPI from :mod:`jobpred.serving.app`: auth, validation,
/v1/predict, the OpenAI routes) -> ``LLMServer`` replicas of ray.serve.llm (vLLM, one placement group each
from ``placement_bundles``, autoscaled between ``min_replicas`` and ``max_replicas`` on
``target_ongoing_requests``).

LoRA: every ``RUN_DIR/adapters/<name>/`` (a peft directory written by `jobpred train`) is the model
``<base>:<name>``. ray.serve.llm multiplexes such ids onto replicas and loads an adapter on first use
(``max_adapters_per_replica`` stay loaded, least recently used evicted). Its stock loader only reads cloud
buckets (``dynamic_lora_loading_path`` must be s3/gs/azure): a run directory in a bucket uses it as is;
for a local run directory (or a shared file system), :class:`LocalLoraLoader` reads it in place. The Ray internals this
needs come from :mod:`jobpred.serving.ray_llm` (the one module that imports ``ray.llm._internal``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

from ray import serve
from ray.serve.llm import LLMConfig, build_llm_deployment

from jobpred.config import JobpredConfig
from jobpred.config import LLMConfig as EngineSettings
from jobpred.llm.budget import TokenCounter
from jobpred.llm.engine import lora_engine_kwargs, vllm_engine_kwargs
from jobpred.models import resolve_model
from jobpred.predict.answers import AnswerRanker
from jobpred.ray_utils import init_ray, niceness_env
from jobpred.serving.app import ModelError, Settings, create_app, error_response
from jobpred.serving.metrics import RayMetrics
from jobpred.serving.ray_llm import (  # Ray 2.60.0 internals, all behind this one module
    ChatCompletionRequest,
    CompletionRequest,
    DiskMultiplexConfig,
    ErrorResponse,
    LoraModelLoader,
    OpenAIHTTPException,
    OpenAiIngress,
    get_base_model_id,
    get_lora_id,
    global_id_manager,
    to_model_metadata,
)
from jobpred.serving.schemas import BadRequest
from jobpred.serving.service import PredictService
from jobpred.storage import Location, is_uri, location

log = logging.getLogger("jobpred.serve")

ADAPTERS_ENV = "JOBPRED_ADAPTERS_DIR"
_ADAPTER_RESCAN_S = 5.0


def adapters_in(run_dir: str | os.PathLike) -> dict[str, Location]:
    """name -> directory of every adapter under RUN_DIR/adapters (a directory with adapter_config.json)."""
    root = location(run_dir) / "adapters"
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "adapter_config.json").is_file()}


def _lora_rank(adapters: dict[str, Location]) -> int:
    """The largest LoRA rank of the adapters (``r`` of their adapter_config.json)."""
    return max(json.loads((p / "adapter_config.json").read_text()).get("r", 8) for p in adapters.values())


def engine_settings(cfg: JobpredConfig) -> EngineSettings:
    """The serve engine settings (``serve.engine``, else ``predict.engine``) with the adapters' base model."""
    engine = cfg.serve.engine or cfg.predict.engine
    return engine.model_copy(update={"model": cfg.adapter_base})


class LocalLoraLoader(LoraModelLoader):
    """LoRA adapters from the run directory named by ``$JOBPRED_ADAPTERS_DIR`` (no download, no copy)."""

    async def load_model_from_config(self, lora_model_id: str, llm_config) -> DiskMultiplexConfig:
        if lora_model_id not in self.disk_cache:
            name = get_lora_id(lora_model_id)
            root = Path(os.environ[ADAPTERS_ENV])
            # names come from requests: only an existing direct child of the adapters directory is accepted
            if name not in {p.name for p in root.iterdir()} or not (root / name / "adapter_config.json").is_file():
                raise ValueError(f"no LoRA adapter {name!r} under {root}")
            self.disk_cache[lora_model_id] = DiskMultiplexConfig(
                model_id=lora_model_id, max_total_tokens=None, local_path=str(root / name),
                lora_assigned_int_id=global_id_manager.next())
        return self.disk_cache[lora_model_id]


def llm_config(cfg: JobpredConfig, run_dir: str | os.PathLike) -> LLMConfig:
    """The ray.serve.llm config of the engine replicas."""
    engine, s = engine_settings(cfg), cfg.serve
    adapters = adapters_in(run_dir)
    engine_kwargs = vllm_engine_kwargs(engine)
    lora = None
    if adapters:
        engine_kwargs.update(lora_engine_kwargs(_lora_rank(adapters), s.max_adapters_per_replica))
        lora = {"max_num_adapters_per_replica": s.max_adapters_per_replica}
        if is_uri(run_dir):  # ray.serve.llm's own loader: each replica downloads <prefix>/<name> on first use
            lora["dynamic_lora_loading_path"] = str(location(run_dir) / "adapters")
    autoscaling = {"min_replicas": s.min_replicas, "max_replicas": s.max_replicas,
                   "initial_replicas": s.min_replicas if s.initial_replicas is None else s.initial_replicas,
                   "target_ongoing_requests": s.target_ongoing_requests}
    return LLMConfig(
        model_loading_config={"model_id": engine.model, "model_source": resolve_model(engine.model)},
        engine_kwargs=engine_kwargs,
        placement_group_config={"bundles": engine.placement_bundles} if engine.placement_bundles else None,
        accelerator_type=engine.accelerator_type,
        runtime_env={"env_vars": {**engine.env, **niceness_env(s.worker_niceness),
                                  ADAPTERS_ENV: str(location(run_dir) / "adapters")}},
        lora_config=lora,
        deployment_config={"autoscaling_config": autoscaling, "max_ongoing_requests": s.max_ongoing_requests,
                           "ray_actor_options": {"num_cpus": s.replica_num_cpus}},
    )


class JobpredIngress(OpenAiIngress):
    """The ingress replica: ray.serve.llm's OpenAI router (handles, multiplexed LoRA routing) + the
    jobpred routes. Its ASGI app is built late (``__serve_build_asgi_app__``) from :func:`create_app`."""

    def __init__(self, llm_deployments, model_cards, *, lora_paths=None, cfg: JobpredConfig, run_dir: str,
                 digests: frozenset[str] | None) -> None:
        super().__init__(llm_deployments, model_cards)
        engine = engine_settings(cfg)
        self.base_model, self.run_dir, self.cfg = engine.model, run_dir, cfg
        self._adapters, self._scanned = set(adapters_in(run_dir)), time.monotonic()
        self.service = PredictService(
            model_id=self.base_model, adapters=self._adapters, generate=self.generate,
            count=TokenCounter(engine), context=engine.max_model_len, predict=cfg.predict,
            ranker=AnswerRanker(top_k=cfg.predict.top_k, nearest_min_score=cfg.predict.nearest_min_score),
            temperature=cfg.serve.temperature, related_k=cfg.serve.related_k,
            default=cfg.serve.default_predictor, chat_template_kwargs=engine.chat_template_kwargs,
            # prompt logprobs kill a vLLM 0.32 engine with LoRA on, which the replicas have when adapters exist
            history_format=cfg.history_format, score=None if self._adapters else self.score)
        self.settings = Settings(digests=digests, max_body_bytes=cfg.serve.max_body_bytes,
                                 request_timeout_s=cfg.serve.request_timeout_s,
                                 max_batch_size=cfg.serve.max_batch_size, observers=[RayMetrics()])
        if digests is None:
            log.warning("jobpred serve is running WITHOUT API keys (--insecure)")

    async def __serve_build_asgi_app__(self):
        return create_app(self, self.settings)

    def adapters(self) -> set[str]:
        """Adapters present now (rescanned every few seconds: one trained after start becomes servable)."""
        if time.monotonic() - self._scanned > _ADAPTER_RESCAN_S:
            self._adapters, self._scanned = set(adapters_in(self.run_dir)), time.monotonic()
            self.service.adapters = self._adapters
        return self._adapters

    def _known(self, model_id: str) -> bool:
        base = get_base_model_id(model_id)
        return base == self.base_model and (model_id == base or get_lora_id(model_id) in self.adapters())

    # ---- the backend interface of create_app -----------------------------------------------------------

    async def list_models(self) -> dict:
        card = self._model_cards[self.base_model].model_dump()
        cards = [card] + [{**card, "id": f"{self.base_model}:{name}"} for name in sorted(self.adapters())]
        return {"object": "list", "data": cards}

    async def get_model(self, model_id: str) -> dict | None:
        if not self._known(model_id):
            return None
        return {**self._model_cards[self.base_model].model_dump(), "id": model_id}

    async def openai(self, kind: str, body: dict, request):
        from fastapi.responses import JSONResponse
        from pydantic import ValidationError

        try:
            req = (ChatCompletionRequest if kind == "chat" else CompletionRequest).model_validate(body)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            raise BadRequest(400, where, err["msg"].removeprefix("Value error, ")[:300]) from None
        if req.model is not None and not self._known(req.model):
            raise BadRequest(404, "model", f"model {req.model[:200]!r} does not exist; GET /v1/models lists them")
        try:
            return await self._process_llm_request(req, call_method=kind, raw_request=request)
        except OpenAIHTTPException as exc:  # the engine rejected it (e.g. a prompt over the context): 4xx
            return error_response(exc.status_code, exc.message, exc.type)
        except ValueError as exc:  # vLLM's request validation
            return JSONResponse({"error": {"message": str(exc)[:500], "type": "invalid_request_error",
                                           "param": None, "code": 400}}, 400)

    async def generate(self, model: str, messages: list[dict], sampling: dict) -> str:
        """One non-streaming chat completion on the engine replicas (LoRA via ``<base>:<adapter>``)."""
        extra = {"structured_outputs": {"regex": sampling["regex"]}} if "regex" in sampling else {}
        req = ChatCompletionRequest(
            model=model, messages=messages, temperature=sampling["temperature"], max_tokens=sampling["max_tokens"],
            continue_final_message=sampling["continue_final_message"],
            add_generation_prompt=sampling["add_generation_prompt"],
            chat_template_kwargs=sampling.get("chat_template_kwargs"), stream=False, **extra)
        return (await self._complete(req)).choices[0].message.content or ""

    async def _complete(self, req: ChatCompletionRequest):
        """One non-streaming chat completion on the replicas; ModelError (503 while a replica is missing)."""
        from ray.exceptions import RayError

        stream = self._get_response(body=req, call_method="chat")
        try:
            first = await stream.__anext__()
        except RayError as exc:  # the replica died (e.g. killed for memory) or is restarting
            raise ModelError(f"engine replica unavailable ({type(exc).__name__})", status=503) from None
        finally:
            await stream.aclose()
        first = first[0] if isinstance(first, list) else first
        if isinstance(first, ErrorResponse):
            raise ModelError(first.error.message)
        return first

    async def score(self, model: str, messages: list[dict], score_from: int) -> float | None:
        """The 'ranked' mode: log P(the prompt's tokens from ``score_from`` on) from one prefill (prompt
        logprobs, one generated token); None when the engine returned none. (The OpenAI API has no switch
        for reading the prefix cache with prompt logprobs, so online each candidate pays its whole prefill.)"""
        req = ChatCompletionRequest(
            model=model, messages=messages, temperature=0.0, max_tokens=1, continue_final_message=True,
            add_generation_prompt=False, prompt_logprobs=0, stream=False,
            chat_template_kwargs=self.service.chat_template_kwargs)
        entries = ((await self._complete(req)).prompt_logprobs or [])[score_from:]
        if not entries or any(not e for e in entries):
            return None
        return float(sum(next(iter(e.values())).logprob for e in entries))


def build_application(cfg: JobpredConfig, run_dir: str | os.PathLike, digests: frozenset[str] | None):
    """The Serve application: engine deployment (+ LoRA) and the jobpred ingress in front of it."""
    config = llm_config(cfg, run_dir)
    bind = {"model_downloader": LocalLoraLoader} if config.lora_config and not is_uri(run_dir) else None
    server = build_llm_deployment(config, bind_kwargs=bind)
    ingress = serve.deployment(
        serve.ingress()(JobpredIngress), name="JobpredIngress", num_replicas=cfg.serve.ingress_replicas,
        max_ongoing_requests=4 * cfg.serve.max_ongoing_requests * cfg.serve.max_replicas,
        ray_actor_options={"num_cpus": cfg.serve.ingress_num_cpus,
                           "runtime_env": {"env_vars": niceness_env(cfg.serve.worker_niceness)}})
    return ingress.bind(
        {config.model_id: server}, {config.model_id: to_model_metadata(config.model_id, config)},
        cfg=cfg, run_dir=str(location(run_dir)), digests=digests)


def run_server(cfg: JobpredConfig, run_dir: str | os.PathLike, digests: frozenset[str] | None,
               block: bool = True) -> str:
    """Start Ray (cfg.ray), Serve on ``serve.host:serve.port`` and the application; returns the base URL.
    With ``block`` it waits until interrupted, then shuts Serve down."""
    if not location(run_dir).is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    init_ray(cfg.ray)
    serve.start(proxy_location=cfg.serve.proxy_location,
                http_options={"host": cfg.serve.host, "port": cfg.serve.port,
                              "request_timeout_s": cfg.serve.request_timeout_s + 30})
    serve.run(build_application(cfg, run_dir, digests), name="jobpred", route_prefix="/")
    url = f"http://{cfg.serve.host}:{cfg.serve.port}"
    if not block:
        return url
    print(json.dumps({"url": url, "model": engine_settings(cfg).model,
                      "adapters": sorted(adapters_in(run_dir)), "auth": digests is not None}), flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` shuts down as Ctrl-C does
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
    return url
