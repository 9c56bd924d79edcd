"""`queue-processor`: one SQS client, the ops server and the engine; signals are handled here only.

First SIGTERM/SIGINT: graceful stop. A second: stop at once (exit code 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog

from conveyor import tracing
from conveyor.canary.reply import responder_for
from conveyor.idempotency import IdempotencyStore, open_store
from conveyor.message import idempotency_options
from conveyor.processor.config import EngineConfig
from conveyor.processor.dedupe import Dedupe, KeyFunction
from conveyor.processor.engine import Engine
from conveyor.processor.handler import THREADS, adapt, import_handler
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.ops import OpsServer, ops_server
from conveyor.settings import ProcessorSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import classified

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
from conveyor.sqs.queues import QueueConfig, dlq_url_of, read_queue_config, resolve_queue_url

log = structlog.get_logger("conveyor.processor")
EXIT_HARD_STOP = 130
EXIT_FAILURE = 1
HARD_STOP_SECONDS = 2.0  # after a second signal, the longest the process lives on


def bind_ops_socket(host: str, port: int) -> socket.socket:
    """Bind the ops port before anything starts, so that a port in use is one clear error."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} for the ops port: {exc.strerror}") from exc
    return sock


async def run(settings: ProcessorSettings) -> int:
    """Run until a signal stops it; returns the exit code."""
    func = import_handler(settings.handler)
    sock = bind_ops_socket(settings.processor_host, settings.processor_port)
    metrics = ProcessorMetrics()
    # Plain-function handlers run here. The pool is shut down without waiting: a thread cannot be
    # stopped, and waiting for one would block the event loop (and a second signal with it).
    pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="handler")
    options = idempotency_options(func)
    store = open_store(settings.idempotency_store) if settings.idempotency_store and options.enabled else None
    try:
        with sock:
            async with sqs_client(settings, metrics.observe_sqs_call) as client, store or contextlib.nullcontext():
                queue, dlq = await _read_queues(client, settings)
                if dlq is None:
                    log.warning("no_dead_letter_queue", detail="permanent errors back off and are never deleted")
                config = EngineConfig.build(settings, queue, dlq)
                dedupe = _dedupe(store, config, settings, options.key)
                canary = await responder_for(client, settings, metrics.registry)
                engine = Engine(
                    client, config, adapt(func, pool), metrics=metrics, dedupe=dedupe, canary=canary,
                    tracing=tracing.ACTIVE,
                )  # fmt: skip
                engine.health.poll_succeeded()  # the queue answered: ready until polls say otherwise
                return await _serve(engine, ops_server(engine.health, metrics), sock)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


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


async def _read_queues(client: SQSClient, settings: ProcessorSettings) -> tuple[QueueConfig, QueueConfig | None]:
    """The queue's configuration and its dead-letter queue's (for its own size limit)."""
    with classified():
        queue = await read_queue_config(client, await resolve_queue_url(client, settings))
        dlq_url = await dlq_url_of(client, queue)
        return queue, (await read_queue_config(client, dlq_url) if dlq_url else None)


async def _serve(engine: Engine, server: OpsServer, sock: socket.socket) -> int:
    ops = asyncio.create_task(server.serve(sockets=[sock]))
    work = asyncio.create_task(engine.run())
    _handle_signals(engine, work)
    try:
        await work
    except asyncio.CancelledError:
        return EXIT_HARD_STOP
    finally:
        server.should_exit = True
        await ops
    return 0


def _handle_signals(engine: Engine, work: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info("signal_received", action="graceful stop")
            engine.stop()
        else:
            log.warning("signal_received", action="stop at once")
            work.cancel()
            # Cancelling waits for calls under way; if SQS hangs, they could outlast "at once". A
            # thread, not the event loop, ends the process: the loop itself may be what hangs.
            timer = threading.Timer(HARD_STOP_SECONDS, _exit_now, [EXIT_HARD_STOP])
            timer.daemon = True
            timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


def _exit_now(code: int) -> None:
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)


def main(settings: ProcessorSettings) -> int:
    """Run the processor, with tracing as the OTEL_* variables say. Handlers still running in threads
    at the end were abandoned (their messages come back after their visibility timeout): the process
    does not wait for them, as the interpreter would at exit, whether it stops on a signal or on an
    error."""
    tracing.install(tracing.from_environment("queue-processor"))
    try:
        code = asyncio.run(run(settings))
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
