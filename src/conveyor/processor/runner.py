"""`queue-processor`: one SQS client, the ops server and the engine; signals are handled here only.

First SIGTERM/SIGINT: graceful stop. A second: stop at once (exit code 130).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

import structlog

from conveyor.canary.reply import responder_for
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine import Engine
from conveyor.processor.handler import adapt, import_handler
from conveyor.processor.health import Health
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.ops import OpsServer, ops_server
from conveyor.settings import ProcessorSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import SqsError, classify
from conveyor.sqs.queues import dlq_url_of, read_queue_config, resolve_queue_url

log = structlog.get_logger("conveyor.processor")
EXIT_HARD_STOP = 130
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
    health = Health()
    with sock, ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="handler") as pool:
        async with sqs_client(settings, metrics.observe_sqs_call) as client:
            try:
                queue = await read_queue_config(client, await resolve_queue_url(client, settings))
                dlq_url = await dlq_url_of(client, queue)
            except Exception as exc:
                raise SqsError(classify(exc)) from exc
            if dlq_url is None:
                log.warning("no_dead_letter_queue", detail="permanent errors back off and are never deleted")
            health.poll_succeeded()  # the queue answered: ready until polls say otherwise
            config = EngineConfig.build(settings, queue, dlq_url)
            canary = await responder_for(client, settings, metrics.registry)
            engine = Engine(client, config, adapt(func, pool), metrics=metrics, health=health, canary=canary)
            return await _serve(engine, ops_server(health, metrics), sock)


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
            # Cancelling waits for calls under way; if SQS hangs, they could outlast "at once".
            loop.call_later(HARD_STOP_SECONDS, os._exit, EXIT_HARD_STOP)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


def main(settings: ProcessorSettings) -> int:
    return asyncio.run(run(settings))
