"""`queue-writer`: check the queue, then serve the app with uvicorn."""

from __future__ import annotations

import asyncio

import uvicorn

from conveyor.settings import WriterSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import Kind, SqsError, classify
from conveyor.sqs.queues import read_queue_config, resolve_queue_url

GRACEFUL_SHUTDOWN_SECONDS = 30


async def preflight(settings: WriterSettings) -> None:
    """Fail at start-up, with one line, when the queue cannot be used at all."""
    async with sqs_client(settings) as client:
        try:
            await read_queue_config(client, await resolve_queue_url(client, settings))
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is Kind.RETRYABLE:
                return  # SQS may come back: serve and answer 503 meanwhile
            raise SqsError(failure) from exc


def serve(settings: WriterSettings) -> int:
    asyncio.run(preflight(settings))
    uvicorn.run(
        "conveyor.writer.asgi:app",
        factory=True,
        host=settings.writer_host,
        port=settings.writer_port,
        workers=settings.writer_workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
    )
    return 0
