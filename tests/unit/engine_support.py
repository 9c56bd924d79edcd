"""Helpers to run the processor engine against the in-memory SQS."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from conveyor.message import Message
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine import Engine
from conveyor.processor.user_code import BatchHandler
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.polling import until

__all__ = ["DLQ", "QUEUE", "config_for", "left", "running", "sample", "started", "until"]

QUEUE = "work"
DLQ = "work-dlq"


def config_for(fake: InMemorySqs, queue: str = QUEUE, /, **overrides: object) -> EngineConfig:
    """Sub-second timings for ``queue`` (a ``.fifo`` name makes a FIFO engine) and its DLQ."""
    fifo = queue.endswith(".fifo")
    dlq = queue.removesuffix(".fifo") + "-dlq" + (".fifo" if fifo else "")
    base = EngineConfig(
        queue_url=fake.queues[queue].url,
        dlq_url=fake.queues[dlq].url if dlq in fake.queues else None,
        fifo=fifo,
        concurrency=5,
        prefetch=10,
        pollers=1,
        wait_time_seconds=1,
        visibility_timeout=2.0,
        max_receive_count=5,
        retry_base_seconds=0.1,
        retry_max_seconds=1,
        delete_linger=0.01,
        shutdown_grace=5,
        poll_error_backoff_max=0.05,
        poll_drain_seconds=0.2,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@asynccontextmanager
async def started(engine: Engine) -> AsyncIterator[asyncio.Task[None]]:
    """``engine`` running in the background (its task, to see whether it ended); stopped gracefully
    on exit, and what ended it raised."""
    task = asyncio.create_task(engine.run())
    try:
        yield task
    finally:
        engine.stop()
        await asyncio.wait_for(task, 10)


@asynccontextmanager
async def running(
    fake: InMemorySqs,
    handler: Callable[[Message], Awaitable[None]] | BatchHandler,
    /,
    queue: str = QUEUE,
    **overrides: object,
) -> AsyncIterator[Engine]:
    """An engine on ``queue`` of the fake, running in the background; stopped gracefully on exit."""
    engine = Engine(as_client(fake), config_for(fake, queue, **overrides), handler)
    async with started(engine):
        yield engine


def sample(engine: Engine, name: str, **labels: str) -> float:
    """A metric of the engine as Prometheus would scrape it, summed over the series whose labels
    include ``labels`` (0 when absent)."""
    return sum(
        s.value
        for family in engine.metrics.registry.collect()
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def left(fake: InMemorySqs, name: str = QUEUE) -> int:
    """Messages still on a queue of the fake (visible or not)."""
    return len(fake.queues[name].messages)
