"""The FastAPI application of the Serve ingress: routes, errors, metrics, over a backend.

    app = create_app(backend, Settings(digests=..., max_body_bytes=..., request_timeout_s=..., max_batch_size=...))

Routes: ``GET /healthz`` (no key), ``POST /v1/predict``, the OpenAI-compatible ``GET /v1/models``,
``GET /v1/models/{id}``, ``POST /v1/chat/completions`` and ``POST /v1/completions`` (adapters are the models
``<base>:<adapter>``), and ``GET /metrics`` (Prometheus text: this replica's request counts and latencies,
:mod:`jobpred.serving.metrics`; Serve's own metrics and the same counters cluster-wide are on Ray's metrics
endpoint).

The backend (:class:`jobpred.serving.deployment.JobpredIngress` in Serve, a fake in unit tests) provides
``service`` (a :class:`~jobpred.serving.service.PredictService`), ``list_models()``, ``get_model(id)`` and
``openai(kind, body, request)``. Client errors are 4xx with the field named; a request body is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from jobpred.serving.metrics import PromMetrics
from jobpred.serving.schemas import BadRequest, parse_predict_body
from jobpred.serving.security import GuardMiddleware

log = logging.getLogger("jobpred.serve")

Observer = Callable[[str, int, str, float], None]
"""(route, status, predictor or '', seconds) after each request."""


@dataclass
class Settings:
    digests: frozenset[str] | None  # SHA-256 of the API keys; None: --insecure, no auth
    max_body_bytes: int = 1_000_000
    request_timeout_s: float = 60.0
    max_batch_size: int = 32
    observers: list[Observer] = field(default_factory=list)


class ModelError(RuntimeError):
    """The engine failed on a request we had already validated: 502, or ``status`` (503 when no engine
    replica is available, e.g. one was restarted after running out of memory)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def error_response(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status)


def create_app(backend, settings: Settings) -> FastAPI:
    app = FastAPI(title="jobpred", docs_url=None, redoc_url=None, openapi_url=None)
    prom = PromMetrics()
    observers = [prom, *settings.observers]

    def observe(route: str, status: int, predictor: str, started: float) -> None:
        seconds = time.perf_counter() - started
        for obs in observers:
            obs(route, status, predictor, seconds)
        log.info("%s %d predictor=%s %.0fms", route, status, predictor or "-", seconds * 1000)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return Response(prom.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/predict")
    async def predict(request: Request):
        started, predictor = time.perf_counter(), ""
        try:
            records, batch, field_predictor = parse_predict_body(await request.body(), settings.max_batch_size)
            predictor = backend.service.resolve(request.query_params.get("predictor") or field_predictor)
            mode = backend.service.resolve_mode(request.query_params.get("answer_mode"))
            results = await asyncio.wait_for(_predict_all(backend.service, records, predictor, mode),
                                             settings.request_timeout_s)
        except BadRequest as exc:
            observe("/v1/predict", exc.status, predictor, started)
            return error_response(exc.status, str(exc), "invalid_request_error", exc.field)
        except asyncio.TimeoutError:
            observe("/v1/predict", 504, predictor, started)
            return error_response(504, f"prediction took longer than {settings.request_timeout_s:g}s",
                                  "timeout")
        except ModelError as exc:
            observe("/v1/predict", exc.status, predictor, started)
            return error_response(exc.status, f"model error: {str(exc)[:300]}", "model_error")
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        observe("/v1/predict", 200, predictor, started)
        if batch:
            return {"predictions": results, "latency_ms": elapsed_ms}
        return {**results[0], "latency_ms": elapsed_ms}

    @app.get("/v1/models")
    async def models():
        return await backend.list_models()

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        card = await backend.get_model(model_id)
        if card is None:
            return error_response(404, f"model {model_id[:200]!r} does not exist", "invalid_request_error", "model")
        return card

    async def _openai(kind: str, route: str, request: Request):
        started = time.perf_counter()
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            observe(route, 400, "", started)
            return error_response(400, "body: not valid JSON", "invalid_request_error", "body")
        if not isinstance(body, dict):
            observe(route, 400, "", started)
            return error_response(400, "body: must be a JSON object", "invalid_request_error", "body")
        try:
            response = await asyncio.wait_for(backend.openai(kind, body, request), settings.request_timeout_s)
        except BadRequest as exc:
            observe(route, exc.status, "", started)
            return error_response(exc.status, str(exc), "invalid_request_error", exc.field)
        except asyncio.TimeoutError:
            observe(route, 504, "", started)
            return error_response(504, f"request took longer than {settings.request_timeout_s:g}s", "timeout")
        observe(route, response.status_code, "", started)
        return response

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await _openai("chat", "/v1/chat/completions", request)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _openai("completions", "/v1/completions", request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # A bug or an engine failure, never the client's input; logged without the body.
        log.error("unhandled error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return error_response(500, "internal error", "server_error")

    app.add_middleware(GuardMiddleware, digests=settings.digests, max_body_bytes=settings.max_body_bytes)
    return app


async def _predict_all(service, records, predictor: str, mode: str | None = None) -> list[dict]:
    # Preparation first for every record, so one bad record fails the batch before any model call.
    prepared = [await service.prepare(r, predictor) for r in records]
    return list(await asyncio.gather(*(service.predict(r, predictor, p, mode) for r, p in zip(records, prepared))))
