"""The writer's edge, as plain ASGI middleware: request ids, content type, body limit, metrics.

The body is read here, up to the limit, before any route runs: an oversized request is answered 413
as soon as the limit is crossed, without reading the rest.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import Counter
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.tracing import NoTracing, Tracing
from conveyor.writer.api.problems import PROBLEM_JSON
from conveyor.writer.api.request_meta import valid_traceparent
from conveyor.writer.api.schemas import Problem
from conveyor.writer.http.edge_request import REQUEST_ID_HEADER, EdgeRequest, with_request_id
from conveyor.writer.http.fast_path import FastPath
from conveyor.writer.metrics import WriterMetrics

OTHER = "other"  # the route label of a path the app does not serve
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # fullmatch: no trailing newline
_COUNTER_MASK = 2**64 - 1
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json\s*(?:;.*)?", re.IGNORECASE)  # fullmatch


class RequestIds:
    """Request ids: the caller's X-Request-ID when it is valid, else a new one: 32 hex digits, a
    random prefix of this process and a counter (unique without asking the OS for randomness per
    request, which ``uuid4`` does)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(int.from_bytes(os.urandom(4)))

    def of(self, headers: dict[str, str]) -> str:
        given = headers.get(REQUEST_ID_HEADER)
        if given is not None and _VALID_REQUEST_ID.fullmatch(given):
            return given
        return f"{self._prefix}{next(self._count) & _COUNTER_MASK:016x}"


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
        self,
        app: ASGIApp,
        *,
        routes: Routes,
        max_body: int,
        metrics: WriterMetrics,
        tracing: NoTracing | Tracing,
        fast_path: FastPath | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.max_body = max_body
        self.metrics = metrics
        self.tracing = tracing
        self.fast_path = fast_path
        self._ids = RequestIds()
        # Label look-ups once, not per request: prometheus-client's labels() costs a few microseconds.
        self._in_progress = {route: metrics.in_progress.labels(route) for route in (*routes.paths, OTHER)}
        self._requests: dict[tuple[str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope["headers"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        route = scope["path"] if scope["path"] in self.routes.paths else OTHER
        request = EdgeRequest(headers, self._ids.of(headers), route, repeated_headers=len(headers) != len(raw))
        scope.setdefault("state", {})["request_id"] = request.request_id
        if not self.tracing.enabled:
            await self._serve(scope, receive, send, request)
            return
        # The server span: a child of the caller's trace context (the traceparent header), if valid.
        parent = valid_traceparent(headers.get("traceparent", ""))
        with self.tracing.request(scope["method"], None if route == OTHER else route, parent) as span:
            try:
                await self._serve(scope, receive, send, request)
            finally:
                span.status(request.status)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, request: EdgeRequest) -> None:
        in_progress = self._in_progress[request.route]
        in_progress.inc()
        try:
            if (scope["method"], scope["path"]) in self.routes.with_body:
                problem = _content_type_problem(request.headers)
                body = None if problem else await self._read_body(request.headers, receive)
                if problem or body is None:
                    problem = problem or _too_large(self.max_body)
                    await _send_problem(with_request_id(send, request), problem, request.request_id)
                    return
                fast = self.fast_path
                if (
                    fast is not None
                    and fast.takes(scope, request)
                    and await fast.send_and_answer(scope, request, body, send)
                ):
                    return
                scope["state"]["raw_body"] = body  # to explain a body the app cannot parse
                receive = _body_read_first(body, receive)
            await self.app(scope, receive, with_request_id(send, request))
        finally:
            in_progress.dec()
            self._count(request.route, request.status)

    def _count(self, route: str, status: int) -> None:
        counter = self._requests.get((route, status))
        if counter is None:
            counter = self._requests[route, status] = self.metrics.requests.labels(route, str(status))
        counter.inc()

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


def _content_type_problem(headers: dict[str, str]) -> Problem | None:
    content_type = headers.get("content-type", "")
    if content_type == "application/json" or _JSON_TYPE.fullmatch(content_type):
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


def _body_read_first(body: bytes, original: Receive) -> Receive:
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
