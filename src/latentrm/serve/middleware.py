"""Pure ASGI middlewares of the reward server: request metrics, bearer auth, concurrency and body-size limits.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so that streaming bodies and client disconnects pass
through untouched.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from latentrm.serve.metrics import ServeMetrics

ENDPOINTS = ("/get_reward", "/score", "/health", "/metrics")
OPEN_PATHS = frozenset({"/health"})  # liveness/readiness probes need no token


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


class MetricsMiddleware:
    """Counts every request by endpoint and status and times it (including 401/413 from inner layers)."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = {"code": 500}
        started = time.perf_counter()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


class AuthMiddleware:
    """`Authorization: Bearer <token>`, compared in constant time. The token is never logged."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self._token = app, token.strip().encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            header = b""
            for name, value in scope.get("headers", []):
                if name.lower() == b"authorization":
                    header = value
            scheme, _, credential = header.partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self._token)):
                response = error_response(401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                                  {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ConcurrencyLimitMiddleware:
    """503 + Retry-After while `limit` requests are already being handled.

    The batcher's queue bounds the items admitted for scoring, but a request holds its parsed body
    (up to --max-body-mb) before it is admitted, while it is tokenized; this bounds how many do.
    `/health` and `/metrics` are exempt, so probes and scrapes work under overload. One event loop
    runs every request, so a plain counter is safe.
    """

    def __init__(self, app: Any, limit: int, metrics: ServeMetrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics
        self.active = 0

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            self.metrics.rejected.labels("too_many_requests").inc()
            message = (f"{self.active} requests are already being handled, the limit (--max-requests) is "
                       f"{self.limit}; retry later")
            await error_response(503, message, {"Retry-After": "1"})(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class BodyLimitMiddleware:
    """413 for bodies over the limit, by Content-Length or while streaming (chunked uploads)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body over the limit of {self.limit} bytes (--max-body-mb); send fewer items per request"
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error_response(413, message)(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, message)  # FastAPI re-raises HTTPException from body reading
            return event

        await self.app(scope, limited_receive, send)
