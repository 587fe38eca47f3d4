"""API keys and the two checks every request passes before any parsing: the key, and the body size.

Keys come from ``$JOBPRED_API_KEYS`` (comma-separated) and/or ``serve.api_keys_file`` (one per line, ``#``
comments). Only their SHA-256 digests travel to the Serve replicas (deployment arguments are stored by the
Serve controller), and a presented key is compared by digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

KEYS_ENV = "JOBPRED_API_KEYS"
OPEN_PATHS = frozenset({"/healthz"})
"""Routes that need no key (a load balancer's health check)."""
_MIN_KEY_CHARS = 16


def load_api_keys(keys_file: str | None = None, environ: dict | None = None) -> list[str]:
    """Keys from the environment and the optional file; ValueError for a missing file or a too-short key."""
    environ = os.environ if environ is None else environ
    keys = [k.strip() for k in environ.get(KEYS_ENV, "").split(",") if k.strip()]
    if keys_file:
        path = Path(keys_file)
        if not path.is_file():
            raise ValueError(f"serve.api_keys_file {keys_file!r} does not exist")
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(line)
    short = [k for k in keys if len(k) < _MIN_KEY_CHARS]
    if short:
        raise ValueError(f"{len(short)} API key(s) are shorter than {_MIN_KEY_CHARS} characters")
    return keys


def require_api_keys(serve_cfg, insecure: bool, environ: dict | None = None) -> frozenset[str] | None:
    """The SHA-256 digests of the API keys of ``serve_cfg`` (a :class:`jobpred.config.ServeConfig`: keys from
    ``$JOBPRED_API_KEYS`` and ``serve.api_keys_file``), what the Serve application is built with. Without any
    key: ValueError, unless ``insecure`` (then None: no auth). Every entry point (`jobpred serve`,
    ``serve/app.py``) checks through here."""
    keys = load_api_keys(serve_cfg.api_keys_file, environ)
    if not keys and not insecure:
        raise ValueError(f"no API key: set ${KEYS_ENV} (comma-separated) or serve.api_keys_file, or serve "
                         "without keys (`jobpred serve --insecure`, `serve run serve.app:build ... insecure=true`)")
    return frozenset(map(digest, keys)) if keys else None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def key_ok(token: str | None, digests: frozenset[str]) -> bool:
    if token is None:
        return False
    presented = digest(token)
    # compare against every digest so timing says nothing about which one matched
    return any([hmac.compare_digest(presented, d) for d in digests])


async def _send_json(send, status: int, message: str, kind: str, headers: list | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Pure ASGI middleware: 401 without a valid Bearer key (except :data:`OPEN_PATHS`), 413 for a body over
    ``max_body_bytes`` (declared by Content-Length, or counted while it streams). ``digests`` None: no auth."""

    def __init__(self, app, digests: frozenset[str] | None, max_body_bytes: int) -> None:
        self.app, self.digests, self.max_body_bytes = app, digests, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        needs_key = self.digests is not None and path not in OPEN_PATHS
        if needs_key and not key_ok(bearer_token(scope.get("headers", [])), self.digests):
            return await _send_json(send, 401, "missing or invalid API key (Authorization: Bearer <key>)",
                                    "authentication_error", [(b"www-authenticate", b"Bearer")])
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body_bytes
            except ValueError:
                return await _send_json(send, 400, "invalid Content-Length header", "invalid_request_error")
            if too_big:
                return await _send_json(send, 413, f"request body over {self.max_body_bytes} bytes",
                                        "request_too_large")
        limit, seen, started = self.max_body_bytes, 0, False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, f"request body over {limit} bytes", "request_too_large")


class _BodyTooLarge(Exception):
    pass
