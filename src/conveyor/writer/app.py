"""The writer's FastAPI app: routes, lifespan (one SQS client, one batcher), error mapping."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor import metrics_dir, tracing
from conveyor.idempotency import open_store
from conveyor.settings import WriterSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import classify
from conveyor.sqs.queues import QueueConfig
from conveyor.writer.api.problems import PROBLEM_JSON, EntryProblem, from_sqs, problem_response, unexpected_problem
from conveyor.writer.api.request_meta import RequestMeta, request_meta
from conveyor.writer.api.schemas import (
    Accepted,
    BatchIn,
    BatchResult,
    HealthStatus,
    MessageIn,
    Problem,
)
from conveyor.writer.batch.request import send_batch
from conveyor.writer.http.docs import add_docs
from conveyor.writer.http.edge import EdgeMiddleware, Routes
from conveyor.writer.http.fast_path import FastPath
from conveyor.writer.http.parse_errors import parse_problem, validation_problem
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.replay.replay import Keyed, Replay, fingerprint
from conveyor.writer.sending.outgoing import build_outgoing
from conveyor.writer.startup import first_read, read_until_known
from conveyor.writer.state import WriterState

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.writer")
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (400, 413, 415, 422, 500, 503)
}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem}}  # an Idempotency-Key still in flight
MESSAGES_ROUTE = "POST /messages"


def _state(request: Request) -> WriterState:
    # Read directly rather than through Depends(): dependency solving was a fifth of the CPU
    # per request in the writer benchmark.
    state: WriterState = request.app.state.writer
    return state


def create_app(
    settings: WriterSettings, client: SQSClient | None = None, tracer: tracing.NoTracing | tracing.Tracing | None = None
) -> FastAPI:
    """Build the app. ``client`` injects an SQS client (tests); else one is made from settings.
    ``tracer`` is the app's tracing (tests), else the process's (``tracing.ACTIVE``); it is shut down
    (its buffered spans exported) when the app stops."""
    metrics = WriterMetrics()
    tracer = tracing.ACTIVE if tracer is None else tracer
    fast_path = FastPath() if settings.writer_fast_path else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(tracer.shutdown)  # last: after the sender's last flush
            sqs: SQSClient = (
                client
                if client is not None
                else await stack.enter_async_context(sqs_client(settings, metrics.observe_sqs_call))
            )
            first = await first_read(sqs, settings)  # QueueUnusableError: start-up fails, one line
            state = WriterState(settings, sqs, metrics, tracer, direct_batches=client is None)
            if settings.idempotency_store is not None:  # closed after the sender's last flush
                store = await stack.enter_async_context(open_store(settings.idempotency_store))
                state.replay = await stack.enter_async_context(Replay(store, settings, metrics))
            await stack.enter_async_context(state.sender)
            if isinstance(first, QueueConfig):
                state.attach(first)
                log.info("writer_started", queue=first.url, max_message_bytes=first.max_message_bytes)
            else:  # unready until SQS answers: 503 meanwhile
                state.failure = first
                group = await stack.enter_async_context(asyncio.TaskGroup())
                reading = group.create_task(read_until_known(sqs, settings, state.attach, state.set_failure))
                stack.callback(reading.cancel)  # on shutdown, before the group waits for it
            app.state.writer = state
            if fast_path is not None:
                fast_path.state = state
            yield
            log.info("writer_stopping")

    app = FastAPI(
        title="Conveyor queue-writer",
        version="0.1.0",
        description="Validates messages and writes them to an SQS queue.",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},  # Conveyor's own spans (conveyor.tracing)
        docs_url=None,  # served by add_docs from packaged assets, not from a CDN
        redoc_url=None,
    )
    app.openapi = lambda: _openapi_with_problems(app)  # type: ignore[method-assign]
    _add_error_handlers(app)
    _add_routes(app, metrics)
    add_docs(app)
    routes = Routes.of(app)
    app.add_middleware(
        EdgeMiddleware,
        routes=routes,
        max_body=settings.max_request_bytes,
        metrics=metrics,
        tracing=tracer,
        fast_path=fast_path,
    )
    return app


def _openapi_with_problems(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents every model as application/json; errors are application/problem+json."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if int(status) >= 400 and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
        app.openapi_schema = schema
    return app.openapi_schema


def _add_routes(app: FastAPI, metrics: WriterMetrics) -> None:
    @app.post("/messages", status_code=202, response_model=Accepted, responses=ERROR_RESPONSES | CONFLICT)
    async def post_message(message: MessageIn, request: Request) -> Response:
        """Validate one message and answer 202 once SQS has it. With an Idempotency-Key (and an
        idempotency store), a repeat gets the first answer again (Idempotent-Replayed: true)."""
        return await _send_one(message, _state(request), request_meta(request))

    @app.post("/messages/batch", response_model=BatchResult, responses=ERROR_RESPONSES)
    async def post_batch(batch: BatchIn, request: Request) -> Response:
        """Send up to 100 messages; each entry succeeds or fails on its own."""
        return await send_batch(batch, _state(request), request_meta(request))

    @app.get("/healthz", response_model=HealthStatus)
    async def healthz() -> HealthStatus:
        """The process is alive (no AWS call)."""
        return HealthStatus(status="ok")

    @app.get("/readyz", response_model=HealthStatus, responses={503: {"model": Problem}})
    async def readyz(request: Request) -> Response:
        """SQS answers for the queue (cached for a few seconds)."""
        state = _state(request)
        now = time.monotonic()
        if now < state.ready_until:
            return JSONResponse({"status": "ready"})
        try:
            queue = state.require_queue()
            await state.client.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["QueueArn"])
        except EntryProblem as not_started:
            return problem_response(_unready(not_started.to_problem(request.state.request_id)))
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; classified below
            problem = from_sqs(classify(exc)).to_problem(request.state.request_id)
            return problem_response(_unready(problem))
        state.ready_until = now + state.settings.ready_cache_seconds
        return JSONResponse({"status": "ready"})

    shared = metrics_dir.active()  # several workers: every worker's samples, added up
    registry = metrics.registry if shared is None else metrics_dir.aggregate_registry(shared)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        if shared is not None:
            metrics_dir.forget_dead(shared)  # a worker uvicorn replaced no longer counts as in progress
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _send_one(message: MessageIn, state: WriterState, meta: RequestMeta) -> Response:
    queue = state.require_queue()
    if not state.tracing.enabled:
        return await _send_built(message, state, meta, queue)
    # The message carries the context of its send span (a child of the request's), not the caller's.
    with state.tracing.send(queue.name) as traceparent:
        return await _send_built(message, state, dataclasses.replace(meta, traceparent=traceparent), queue)


async def _send_built(message: MessageIn, state: WriterState, meta: RequestMeta, queue: QueueConfig) -> Response:
    outgoing = build_outgoing(message, meta, queue)

    async def send() -> JSONResponse:
        message_id = await state.sender.send(outgoing)
        accepted = Accepted(message_id=message_id, request_id=meta.request_id)
        return JSONResponse(accepted.model_dump(), status_code=202)

    if state.replay is None or meta.idempotency_key is None:
        return await send()
    keyed = Keyed(meta.idempotency_key, fingerprint(MESSAGES_ROUTE, queue, meta.content_type, message))
    return await state.replay.once(keyed, send)


def _unready(problem: Problem) -> Problem:
    return problem.model_copy(update={"status": 503})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EntryProblem)
    async def entry_problem(request: Request, exc: EntryProblem) -> Response:
        return _state(request).problem_response(exc, request.state.request_id)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(validation_problem(exc, request.state.request_id))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        raw_body = getattr(request.state, "raw_body", None)
        if exc.status_code == 400 and exc.__cause__ is not None and raw_body is not None:
            return problem_response(parse_problem(raw_body, request.state.request_id))  # FastAPI's parse error
        problem = Problem(
            title=str(exc.detail), status=exc.status_code, detail=str(exc.detail),
            request_id=request.state.request_id,
        )  # fmt: skip
        return problem_response(problem, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected_error", path=request.url.path)
        return problem_response(unexpected_problem(request.state.request_id))
