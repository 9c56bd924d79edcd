"""The running writer's life, from the app's start to its stop.

At start: the SQS client (unless one is injected), the queue read once (:mod:`conveyor.writer.startup`:
an unusable queue fails the start-up, an unreachable one leaves the writer unready while the read is
retried in the background), the idempotency store's replay when one is configured, and the sender.
At stop, in reverse: the reading stops, the sender flushes what is waiting, the store closes, the
tracer exports its buffered spans.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI

from conveyor import tracing
from conveyor.contracts import App
from conveyor.errors import ConfigurationError
from conveyor.idempotency import open_store
from conveyor.payloads.client import s3_client
from conveyor.payloads.store import PayloadStore
from conveyor.settings import WriterSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import SqsError, SqsFailure, classified
from conveyor.sqs.limits import MAX_MESSAGE_BYTES
from conveyor.sqs.queues import QueueConfig, read_queue_config
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.mirror import Mirror
from conveyor.writer.replay.replay import Replay
from conveyor.writer.sending.offload import Offloader
from conveyor.writer.sending.offload_rule import OffloadRule
from conveyor.writer.startup import first_read, read_until_known
from conveyor.writer.state import WriterState

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.writer")
type Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def writer_lifespan(
    settings: WriterSettings,
    client: SQSClient | None,
    metrics: WriterMetrics,
    tracer: tracing.NoTracing | tracing.Tracing,
    share: Callable[[WriterState], None],
    *,
    contracts: App | None = None,
    s3: S3Client | None = None,
) -> Lifespan:
    """The app's lifespan; ``share`` hands the state to what serves requests, once it is complete."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(tracer.shutdown)  # last: after the sender's last flush
            sqs: SQSClient = (
                client
                if client is not None
                else await stack.enter_async_context(sqs_client(settings, metrics.observe_sqs_call))
            )
            first = await first_read(sqs, settings)  # QueueUnusableError: start-up fails, one line
            offloader = await _offloader(stack, settings, metrics, s3)
            mirror = await _mirror(
                stack, settings, sqs, metrics, first, direct=client is None
            )  # stopped after the sender's last flush
            state = WriterState(
                settings, sqs, metrics, tracer, direct_batches=client is None, contracts=contracts,
                offloader=offloader, mirror=mirror,
            )  # fmt: skip
            if settings.idempotency_store is not None:  # closed after the sender's last flush
                state.replay = await _open_replay(stack, settings.idempotency_store, state)
            await stack.enter_async_context(state.sender)
            await _know_the_queue(stack, state, first)
            share(state)
            yield
            log.info("writer_stopping")

    return lifespan


async def _offloader(
    stack: AsyncExitStack, settings: WriterSettings, metrics: WriterMetrics, s3: S3Client | None
) -> Offloader | None:
    """With a payload bucket: what stores messages over the threshold in S3 (its client made here
    unless one is injected)."""
    bucket = settings.payload_bucket
    if bucket is None:
        return None
    if s3 is None:
        s3 = await stack.enter_async_context(s3_client(settings, metrics.observe_s3_call))
    rule = OffloadRule(bucket, settings.payload_prefix, settings.payload_offload_bytes)
    log.info("payload_offload_on", bucket=bucket, prefix=settings.payload_prefix, above=rule.above)
    return Offloader(PayloadStore(s3), rule, metrics.payload_stored)


async def _mirror(
    stack: AsyncExitStack,
    settings: WriterSettings,
    sqs: SQSClient,
    metrics: WriterMetrics,
    live: QueueConfig | SqsFailure,
    *,
    direct: bool,
) -> Mirror | None:
    """With CONVEYOR_MIRROR_QUEUE_URL: the mirror, running in a task group of its own. A mirror queue
    of the other kind (FIFO or standard) is a start-up error; one that cannot be read now changes
    nothing for the live path (its copies fail, counted)."""
    if settings.mirror_queue_url is None:
        return None
    url = str(settings.mirror_queue_url)
    fifo, max_bytes = url.endswith(".fifo"), MAX_MESSAGE_BYTES
    try:
        with classified():
            queue = await read_queue_config(sqs, url)
        fifo, max_bytes = queue.is_fifo, queue.max_message_bytes
    except SqsError as exc:
        log.error("mirror_queue_unreadable", queue=url, code=exc.failure.code, error=exc.failure.message)
    live_fifo = live.is_fifo if isinstance(live, QueueConfig) else settings.queue_name.endswith(".fifo")
    if fifo != live_fifo:
        kinds = ("a FIFO queue", "a standard one") if fifo else ("a standard queue", "a FIFO one")
        raise ConfigurationError(
            f"CONVEYOR_MIRROR_QUEUE_URL is {kinds[0]} and the live queue {kinds[1]}: they must be alike"
        )
    mirror = Mirror(sqs, url, settings.mirror_ratio, metrics, fifo=fifo, max_bytes=max_bytes, direct=direct)
    group = await stack.enter_async_context(asyncio.TaskGroup())
    sending = group.create_task(mirror.run())

    async def stop() -> None:
        await mirror.stop()
        sending.cancel()

    stack.push_async_callback(stop)
    log.info("mirror_on", queue=url, ratio=settings.mirror_ratio)
    return mirror


async def _open_replay(stack: AsyncExitStack, store_url: str, state: WriterState) -> Replay:
    store = await stack.enter_async_context(open_store(store_url))
    return await stack.enter_async_context(Replay(store, state.settings, state.metrics))


async def _know_the_queue(stack: AsyncExitStack, state: WriterState, first: QueueConfig | SqsFailure) -> None:
    """Attach the queue read at start, else keep reading it in the background (503 meanwhile)."""
    if isinstance(first, QueueConfig):
        state.attach(first)
        log.info("writer_started", queue=first.url, max_message_bytes=first.max_message_bytes)
        if state.contracts is not None:
            handlers = state.contracts.describe()
            log.info("app_loaded", service="queue-writer", app=state.settings.app, handlers=handlers)
        return
    state.failure = first
    group = await stack.enter_async_context(asyncio.TaskGroup())
    reading = group.create_task(read_until_known(state.client, state.settings, state.attach, state.set_failure))
    stack.callback(reading.cancel)  # on shutdown, before the group waits for it
