"""`queue-processor`: one SQS client, the ops server and the engine; signals are handled here only.

First SIGTERM/SIGINT: graceful stop. A second: stop at once (exit code 130).

With ``CONVEYOR_PROCESSES`` above 1 this process is a supervisor (:mod:`conveyor.processor.process.supervisor`)
and its children run the engine here, each reporting its readiness through its link instead of
serving an ops port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import structlog

from conveyor import tracing
from conveyor.contracts import App
from conveyor.idempotency import IdempotencyStore, open_store
from conveyor.message import idempotency_options
from conveyor.payloads.client import s3_client
from conveyor.payloads.store import PayloadStore
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine import Engine
from conveyor.processor.engine.canary_reply import responder_for
from conveyor.processor.engine.claim_keys import KeyFunction
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.engine.flow.rate import RedisBucket
from conveyor.processor.engine.outcome import RetryPolicy
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.process.link import ParentLink, StatusReporter
from conveyor.processor.process.ops import OpsServer, ops_server
from conveyor.processor.process.signals import EXIT_HARD_STOP, on_two_signals
from conveyor.processor.process.startup import (
    EXIT_FAILURE,
    bind_ops_socket,
    read_queues,
)
from conveyor.processor.routing import idempotency_of, router
from conveyor.processor.user_code import THREADS, adapt, load_user_code, log_loaded
from conveyor.settings import ProcessorSettings
from conveyor.sqs.client import sqs_client

log = structlog.get_logger("conveyor.processor")


class Sidecar(Protocol):
    """What runs next to the engine: the ops server, or a child's link to its supervisor."""

    async def serve(self) -> None: ...

    def close(self) -> None: ...


class OpsSidecar:
    def __init__(self, server: OpsServer, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._sock])

    def close(self) -> None:
        self._server.should_exit = True


async def run(settings: ProcessorSettings, link: ParentLink | None = None) -> int:
    """Run until a signal stops it; returns the exit code. With ``link`` (a supervisor's child), no
    ops port: readiness goes to the supervisor."""
    code = load_user_code(settings.app, settings.handler)
    port = link if link is not None else bind_ops_socket(settings.processor_host, settings.processor_port)
    metrics = ProcessorMetrics()
    # Plain-function handlers run here. The pool is shut down without waiting: a thread cannot be
    # stopped, and waiting for one would block the event loop (and a second signal with it).
    pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="handler")
    options = idempotency_of(code) if isinstance(code, App) else idempotency_options(code)
    store = open_store(settings.idempotency_store) if settings.idempotency_store and options.enabled else None
    try:
        with port if isinstance(port, socket.socket) else contextlib.nullcontext():
            async with (
                sqs_client(settings, metrics.observe_sqs_call) as client,
                s3_client(settings, metrics.observe_s3_call) as s3,  # for messages whose payload is in S3
                store or contextlib.nullcontext(),
            ):
                queue, dlq = await read_queues(client, settings)
                if dlq is None:
                    log.warning("no_dead_letter_queue", detail="permanent errors back off and are never deleted")
                config = EngineConfig.build(settings, queue, dlq)
                dedupe = _dedupe(store, config, settings, options.key)
                canary = await responder_for(client, settings, metrics.registry)
                bucket = _shared_bucket(config, metrics)
                engine = Engine(
                    client, config, adapt(_handler(code, pool, config), pool), metrics=metrics, dedupe=dedupe,
                    canary=canary, tracing=tracing.ACTIVE, bucket=bucket, payloads=PayloadStore(s3),
                )  # fmt: skip
                engine.health.poll_succeeded()  # the queue answered: ready until polls say otherwise
                side: Sidecar = (
                    StatusReporter(port, engine.health, engine.stop)
                    if isinstance(port, ParentLink)
                    else OpsSidecar(ops_server(engine.health, metrics.registry), port)
                )
                log_loaded(code, settings.app, settings.handler)
                try:
                    return await _serve(engine, side)
                finally:
                    if bucket is not None:
                        await bucket.aclose()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _handler(code: Callable[..., Any] | App, pool: ThreadPoolExecutor, config: EngineConfig) -> Callable[..., Any]:
    """The handler the engine runs: the user's function, or the app routed by type under the engine's
    own retry policy (a FIFO batch holds back a group exactly where the engine will)."""
    if not isinstance(code, App):
        return code
    return router(code, pool, RetryPolicy.of(config))


def _shared_bucket(config: EngineConfig, metrics: ProcessorMetrics) -> RedisBucket | None:
    """With CONVEYOR_RATE_LIMIT_STORE: the rate limit's bucket on Redis (else the engine keeps its own)."""
    flow = config.flow
    if flow.rate_store is None or flow.rate_per_second is None:
        return None
    # redis-py imports OpenTelemetry's SDK when it is installed: only with a store that needs it
    from conveyor.idempotency.redis_store import redis_client  # noqa: PLC0415

    log.info("rate_limit_shared", per_second=flow.rate_per_second, key=flow.rate_key)
    return RedisBucket(
        redis_client(flow.rate_store), flow.rate_per_second, flow.rate_key,
        on_failure=metrics.rate_limit_store_failures.inc,
    )  # fmt: skip


def _dedupe(
    store: IdempotencyStore | None, config: EngineConfig, settings: ProcessorSettings, key_of: KeyFunction | None
) -> Dedupe | None:
    if store is None:
        return None
    log.info("deduplicating", ttl_seconds=settings.idempotency_ttl_seconds, own_keys=key_of is not None)
    return Dedupe(
        store,
        visibility_timeout=config.visibility_timeout,
        ttl_seconds=settings.idempotency_ttl_seconds,
        linger=config.delete_linger,
        key_of=key_of,
    )


async def _serve(engine: Engine, side: Sidecar) -> int:
    ops = asyncio.create_task(side.serve())
    work = asyncio.create_task(engine.run())
    _handle_signals(engine, work)
    try:
        await work
    except asyncio.CancelledError:
        return EXIT_HARD_STOP
    finally:
        side.close()
        await ops
    return 0


def _handle_signals(engine: Engine, work: asyncio.Task[None]) -> None:
    def stop_at_once() -> None:
        work.cancel()  # waits for calls under way: if SQS hangs, they could outlast "at once"

    on_two_signals(engine.stop, stop_at_once, lambda: _exit_now(EXIT_HARD_STOP))


def _exit_now(code: int) -> None:
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)


def main(settings: ProcessorSettings) -> int:
    """Run the processor, with tracing as the OTEL_* variables say. Handlers still running in threads
    at the end were abandoned (their messages come back after their visibility timeout): the process
    does not wait for them, as the interpreter would at exit, whether it stops on a signal or on an
    error."""
    link = ParentLink.from_environment()
    if link is None and settings.processes > 1:
        from conveyor.processor.process.supervisor import supervise  # noqa: PLC0415 - only a supervisor needs it

        return supervise(settings)
    if link is not None:
        structlog.contextvars.bind_contextvars(process=link.index)  # on every line of this child
    tracing.install(tracing.from_environment("queue-processor"))
    try:
        code = asyncio.run(run(settings, link))
    except Exception as exc:
        if THREADS.running:
            print(f"queue-processor: {exc}", file=sys.stderr)  # the CLI's one line, before leaving now
            _abandon_threads(EXIT_FAILURE)
        raise
    finally:
        tracing.ACTIVE.shutdown()  # the spans still buffered are exported
    if THREADS.running:
        _abandon_threads(code)
    return code


def _abandon_threads(code: int) -> None:
    log.warning("exiting_with_handler_threads_running", threads=THREADS.running)
    _exit_now(code)
