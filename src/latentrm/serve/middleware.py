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
            found = [value for name, value in scope.get("headers", []) if name.lower() == b"authorization"]
            if len(found) > 1:  # which one counts is proxy-dependent: refused, never "the last one wins"
                response = error_response(401, "more than one Authorization header; send exactly one",
                                          {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
            header = found[0] if found else b""
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


MAX_JSON_DEPTH = 64  # our request bodies nest 4 levels deep; 64 leaves room and stops recursion bombs


def json_depth(body: bytes) -> int:
    """Deepest bracket nesting of a JSON text, outside strings (one linear pass, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def body_problem(body: bytes) -> str | None:
    """Why a JSON body cannot be parsed, in words, or None. FastAPI answers all of these with the same
    "There was an error parsing the body"; clients need to know which it was."""
    import json

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not valid UTF-8 (bad byte at offset {exc.start}); send UTF-8 encoded JSON"
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        return f"the JSON body is nested {depth} levels deep, over the limit of {MAX_JSON_DEPTH}"
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return None  # FastAPI's own 422 names the position; keep it
    except ValueError as exc:  # e.g. Python's limit on digits in an integer
        return f"the JSON body holds a number that cannot be read ({' '.join(str(exc).split())[:120]})"
    return None


class BodyReadMiddleware:
    """Reads the whole body of POST requests with a time limit, checks that it can be parsed, replays it.

    - A client that declares a Content-Length and then sends fewer bytes (or stalls mid-body) gets
      408 after `timeout` seconds instead of holding a connection and a concurrency slot forever.
    - A body that is not UTF-8, nests deeper than MAX_JSON_DEPTH, or holds a number Python will not
      read gets 400 naming the problem.
    Bodies are already bounded by BodyLimitMiddleware (outside this one), so buffering is safe.
    """

    def __init__(self, app: Any, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        import asyncio

        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                event = await asyncio.wait_for(receive(), timeout=remaining)
                if event["type"] == "http.disconnect":
                    return  # the client left; nothing to answer
                chunks.append(event.get("body", b""))
                if not event.get("more_body", False):
                    break
        except TimeoutError:
            message = (f"the request body did not arrive within {self.timeout:g} s (--body-timeout); "
                       "send the whole body the Content-Length announces")
            await error_response(408, message, {"Connection": "close"})(scope, receive, send)
            return
        except HTTPException as exc:  # the body-size limit, raised from the outer receive
            await error_response(exc.status_code, str(exc.detail))(scope, receive, send)
            return
        body = b"".join(chunks)
        problem = body_problem(body) if body else None
        if problem:
            await error_response(400, problem)(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices, as before

        await self.app(scope, replay, send)
