"""What a `queue-processor` checks before anything runs (the single process and the supervisor
alike): the ops port it will serve on, the queue and its dead-letter queue. Signals: :mod:`signals`."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import structlog

from conveyor.settings import ProcessorSettings
from conveyor.sqs.errors import classified
from conveyor.sqs.queues import QueueConfig, dlq_url_of, read_queue_config, resolve_queue_url

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.processor")
EXIT_FAILURE = 1


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
