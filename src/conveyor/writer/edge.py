"""The writer's edge, as plain ASGI middleware: request ids, content type, body limit, metrics.

The body is read here, up to the limit, before any route runs: an oversized request is answered 413
as soon as the limit is crossed, without reading the rest.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.tracing import NoTracing, Tracing
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.problems import PROBLEM_JSON
from conveyor.writer.request_meta import valid_traceparent
from conveyor.writer.schemas import Problem

REQUEST_ID_HEADER = "x-request-id"
OTHER = "other"  # the route label of a path the app does not serve
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # fullmatch: no trailing newline
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json\s*(?:;.*)?", re.IGNORECASE)  # fullmatch


def request_id_from(headers: dict[str, str]) -> str:
    """The caller's X-Request-ID when it is valid, else a new one."""
    given = headers.get(REQUEST_ID_HEADER, "")
    return given if _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


@dataclass(slots=True)
class Exchange:
    """One HTTP request as the edge sees it: its headers (lower-case names; a repeated header's last
    value), its request id, its route label, and the status of its answer (500 until one is sent)."""

    headers: dict[str, str]
    request_id: str
    route: str
    status: int = 500


@dataclass(frozen=True, slots=True)
class Routes:
    """What the edge needs to know of the app's routes, read from the app itself."""

    paths: frozenset[str]  # the metrics' route label; any other path is OTHER
    with_body: frozenset[tuple[str, str]]  # (method, path) of the routes that read a request body

    @classmethod
    def of(cls, app: FastAPI) -> Routes:
        routes = [r for r in app.routes if isinstance(r, Route)]
        with_body = {
            (method, r.path)
            for r in routes
            if isinstance(r, APIRoute) and r.body_field is not None
            for method in r.methods or ()
        }  # fmt: skip
        return cls(frozenset(r.path for r in routes), frozenset(with_body))


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, routes: Routes, max_body: int, metrics: WriterMetrics, tracing: NoTracing | Tracing
    ) -> None:
        self.app = app
        self.routes = routes
        self.max_body = max_body
        self.metrics = metrics
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        route = scope["path"] if scope["path"] in self.routes.paths else OTHER
        exchange = Exchange(headers, request_id_from(headers), route)
        scope.setdefault("state", {})["request_id"] = exchange.request_id
        if not self.tracing.enabled:
            await self._serve(scope, receive, send, exchange)
            return
        # The server span: a child of the caller's trace context (the traceparent header), if valid.
        parent = valid_traceparent(headers.get("traceparent", ""))
        with self.tracing.request(scope["method"], None if route == OTHER else route, parent) as span:
            try:
                await self._serve(scope, receive, send, exchange)
            finally:
                span.status(exchange.status)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        send = _wrap_send(send, exchange)
        in_progress = self.metrics.in_progress.labels(exchange.route)
        in_progress.inc()
        try:
            if (scope["method"], scope["path"]) in self.routes.with_body:
                problem = _content_type_problem(exchange.headers)
                body = None if problem else await self._read_body(exchange.headers, receive)
                if problem or body is None:
                    problem = problem or _too_large(self.max_body)
                    await _send_problem(send, problem, exchange.request_id)
                    return
                scope["state"]["raw_body"] = body  # to explain a body the app cannot parse
                receive = _replay(body, receive)
            await self.app(scope, receive, send)
        finally:
            in_progress.dec()
            self.metrics.requests.labels(exchange.route, str(exchange.status)).inc()

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _wrap_send(send: Send, exchange: Exchange) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            exchange.status = message["status"]
            headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
            headers.append((b"x-request-id", exchange.request_id.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _content_type_problem(headers: dict[str, str]) -> Problem | None:
    if _JSON_TYPE.fullmatch(headers.get("content-type", "")):
        return None
    return Problem(
        title="Unsupported media type",
        status=415,
        detail="send the request body as Content-Type: application/json",
    )


def _too_large(limit: int) -> Problem:
    return Problem(
        title="Request too large",
        status=413,
        detail=f"the request body exceeds the limit of {limit} bytes",
    )


def _replay(body: bytes, original: Receive) -> Receive:
    """Hand the app the body read already; after that, the real channel (for disconnects)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


async def _send_problem(send: Send, problem: Problem, request_id: str) -> None:
    problem = problem.model_copy(update={"request_id": request_id})
    payload = problem.model_dump_json(exclude_none=True).encode()
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", b"%d" % len(payload))]
    if problem.status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body was never read
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
