"""The writer's FastAPI routes: ``POST /messages`` (with ``Idempotency-Key`` replay), ``POST
/messages/batch`` (:mod:`conveyor.writer.batch`), ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from conveyor import metrics_dir
from conveyor.sqs.errors import classify
from conveyor.sqs.queues import QueueConfig
from conveyor.writer.api.problems import EntryProblem, from_sqs, problem_response
from conveyor.writer.api.request_meta import RequestMeta, request_meta
from conveyor.writer.api.schemas import Accepted, BatchIn, BatchResult, HealthStatus, MessageIn, Problem
from conveyor.writer.batch.request import send_batch
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.replay.keyed import Keyed, fingerprint
from conveyor.writer.sending.outgoing import build_outgoing
from conveyor.writer.state import WriterState

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (400, 413, 415, 422, 500, 503)
}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem}}  # an Idempotency-Key still in flight
MESSAGES_ROUTE = "POST /messages"


def writer_state(request: Request) -> WriterState:
    """The running writer's state, as the lifespan shared it."""
    # Read directly rather than through Depends(): dependency solving was a fifth of the CPU
    # per request in the writer benchmark.
    state: WriterState = request.app.state.writer
    return state


def add_routes(app: FastAPI, metrics: WriterMetrics) -> None:
    @app.post("/messages", status_code=202, response_model=Accepted, responses=ERROR_RESPONSES | CONFLICT)
    async def post_message(message: MessageIn, request: Request) -> Response:
        """Validate one message and answer 202 once SQS has it. With an Idempotency-Key (and an
        idempotency store), a repeat gets the first answer again (Idempotent-Replayed: true)."""
        return await _send_one(message, writer_state(request), request_meta(request))

    @app.post("/messages/batch", response_model=BatchResult, responses=ERROR_RESPONSES)
    async def post_batch(batch: BatchIn, request: Request) -> Response:
        """Send up to 100 messages; each entry succeeds or fails on its own."""
        return await send_batch(batch, writer_state(request), request_meta(request))

    @app.get("/healthz", response_model=HealthStatus)
    async def healthz() -> HealthStatus:
        """The process is alive (no AWS call)."""
        return HealthStatus(status="ok")

    @app.get("/readyz", response_model=HealthStatus, responses={503: {"model": Problem}})
    async def readyz(request: Request) -> Response:
        """SQS answers for the queue (cached for a few seconds)."""
        return await _readiness(writer_state(request), request.state.request_id)

    shared = metrics_dir.active()  # several workers: every worker's samples, added up
    registry = metrics.registry if shared is None else metrics_dir.aggregate_registry(shared)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        if shared is not None:
            metrics_dir.forget_dead(shared)  # a worker uvicorn replaced no longer counts as in progress
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _readiness(state: WriterState, request_id: str) -> Response:
    now = time.monotonic()
    if now < state.ready_until:
        return JSONResponse({"status": "ready"})
    try:
        queue = state.require_queue()
        await state.client.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["QueueArn"])
    except EntryProblem as not_started:
        return problem_response(_unready(not_started.to_problem(request_id)))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; classified below
        problem = from_sqs(classify(exc)).to_problem(request_id)
        return problem_response(_unready(problem))
    state.ready_until = now + state.settings.ready_cache_seconds
    return JSONResponse({"status": "ready"})


async def _send_one(message: MessageIn, state: WriterState, meta: RequestMeta) -> Response:
    queue = state.require_queue()
    if not state.tracing.enabled:
        return await _send_built(message, state, meta, queue)
    # The message carries the context of its send span (a child of the request's), not the caller's.
    with state.tracing.send(queue.name) as traceparent:
        return await _send_built(message, state, dataclasses.replace(meta, traceparent=traceparent), queue)


async def _send_built(message: MessageIn, state: WriterState, meta: RequestMeta, queue: QueueConfig) -> Response:
    outgoing = build_outgoing(message, meta, queue, state.contracts, state.offload_rule)

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
