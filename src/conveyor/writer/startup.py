"""The writer's start-up: the queue's configuration is read once, by the app, with its own client.

- SQS answers: the writer is ready.
- The queue cannot be used (missing, access denied, credentials refused, KMS key unusable): start-up
  fails with :class:`QueueUnusableError`, which ``queue-writer`` prints as one line before exiting 1.
- SQS cannot be reached (or throttles, or fails): the writer starts unready. Messages are answered
  503 with ``Retry-After`` and ``/readyz`` is 503 while the read is retried in the background with
  backoff; the first good answer makes the writer ready. If SQS then says the queue cannot be used,
  the writer stays up and unready (500 with the code, ``/readyz`` 503, an error in the log), as it
  does when the queue disappears while it serves.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from conveyor.settings import SqsSettings
from conveyor.sqs.errors import SqsError, SqsFailure, classified
from conveyor.sqs.queues import QueueConfig, read_queue_config, resolve_queue_url

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.writer")

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


class QueueUnusableError(SqsError):
    """The queue cannot be used, and retrying will not change that: the operator must act. Its text
    is the one line ``queue-writer`` prints, ``<code>: <SQS's text>``, as the processor does."""


async def read_queue(client: SQSClient, settings: SqsSettings) -> QueueConfig:
    """Resolve the queue URL and read its configuration; raise a classified :class:`SqsError`."""
    with classified():
        return await read_queue_config(client, await resolve_queue_url(client, settings))


async def first_read(client: SQSClient, settings: SqsSettings) -> QueueConfig | SqsFailure:
    """The configuration, or the failure to retry in the background; raise :class:`QueueUnusableError`."""
    try:
        return await read_queue(client, settings)
    except SqsError as exc:
        if not exc.failure.retryable:
            raise QueueUnusableError(exc.failure) from exc
        _unreachable(exc.failure, FIRST_RETRY_SECONDS)
        return exc.failure


async def read_until_known(
    client: SQSClient,
    settings: SqsSettings,
    on_config: Callable[[QueueConfig], None],
    on_failure: Callable[[SqsFailure], None],
) -> None:
    """Retry the read with capped, jittered backoff until SQS answers (ready) or says the queue
    cannot be used (unready for good)."""
    delay = FIRST_RETRY_SECONDS
    while True:
        await asyncio.sleep(delay * (0.5 + random.random()))
        try:
            config = await read_queue(client, settings)
        except SqsError as exc:
            on_failure(exc.failure)
            if not exc.failure.retryable:
                log.error("queue_unusable", code=exc.failure.code, error=exc.failure.message)
                return
            delay = min(delay * 2, MAX_RETRY_SECONDS)
            _unreachable(exc.failure, delay)
            continue
        on_config(config)
        log.info("writer_ready", queue=config.url, max_message_bytes=config.max_message_bytes)
        return


def _unreachable(failure: SqsFailure, retry_in: float) -> None:
    log.warning("queue_unreachable", code=failure.code, error=failure.message, retry_in=retry_in)
