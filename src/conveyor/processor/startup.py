"""What a `queue-processor` checks before anything runs (the single process and the supervisor
alike): the ops port it will serve on, the queue and its dead-letter queue; and the exit codes."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from conveyor.settings import ProcessorSettings
from conveyor.sqs.errors import classified
from conveyor.sqs.queues import QueueConfig, dlq_url_of, read_queue_config, resolve_queue_url

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

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


async def read_queues(client: SQSClient, settings: ProcessorSettings) -> tuple[QueueConfig, QueueConfig | None]:
    """The queue's configuration and its dead-letter queue's (for its own size limit)."""
    with classified():
        queue = await read_queue_config(client, await resolve_queue_url(client, settings))
        dlq_url = await dlq_url_of(client, queue)
        return queue, (await read_queue_config(client, dlq_url) if dlq_url else None)


def on_two_signals(graceful: Callable[[], None], at_once: Callable[[], None], last_resort: Callable[[], None]) -> None:
    """SIGTERM/SIGINT: the first calls ``graceful``, a second ``at_once``; ``HARD_STOP_SECONDS`` after
    that, ``last_resort`` ends the process from a thread, not from the event loop (which may be what
    hangs: an SQS call under way, a blocked handler)."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info("signal_received", action="graceful stop")
            graceful()
            return
        log.warning("signal_received", action="stop at once")
        at_once()
        timer = threading.Timer(HARD_STOP_SECONDS, last_resort)
        timer.daemon = True
        timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
