"""The writer and the processor in one process over the in-memory SQS: post messages through the
real HTTP API, let the real engine handle them, and look at what was dead-lettered and what is left.

::

    async with InMemoryStack(app) as stack:
        answer = await stack.writer.post("/messages", json={"type": "order.created", "body": {...}})
        await stack.drain()
        assert stack.dead_letters == []
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from conveyor import metadata
from conveyor.contracts import App
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine import Engine
from conveyor.processor.engine.outcome import RetryPolicy
from conveyor.processor.routing import router
from conveyor.processor.user_code import adapt
from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, StoredMessage, as_client
from conveyor.writer.app import create_app

if TYPE_CHECKING:
    import httpx

POLL_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class Queued:
    """A message still on the queue (waiting for a retry, say)."""

    message_id: str
    body: str
    attributes: dict[str, str]
    receive_count: int


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message the processor dead-lettered, with its record (error type and message, validation
    errors, receive count, ...: what `conveyor dlq` reads)."""

    message_id: str  # the original message's id
    body: str
    attributes: dict[str, str]
    record: dict[str, Any]

    @property
    def error_type(self) -> str | None:
        value = self.record.get("error_type")
        return value if isinstance(value, str) else None


class InMemoryStack:
    """``async with InMemoryStack(app) as stack``: ``stack.writer`` is an ``httpx.AsyncClient`` on the
    writer's app, :meth:`drain` runs the processor until the queue is empty, :attr:`dead_letters` and
    :attr:`queue` show the result. ``target`` is an app or one handler function."""

    def __init__(
        self,
        target: App | Callable[..., Any],
        *,
        queue_name: str = "conveyor-messages",
        max_receive_count: int = 5,
        concurrency: int = 10,
        retry_seconds: float = 0.0,
    ) -> None:
        self.sqs = InMemorySqs()
        fifo = queue_name.endswith(".fifo")
        self._queue = self.sqs.create(queue_name, max_receive_count=max_receive_count)
        self._dlq = self.sqs.queues[queue_name.removesuffix(".fifo") + "-dlq" + (".fifo" if fifo else "")]
        self._target = target
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="handler")
        config = EngineConfig(
            queue_url=self._queue.url, dlq_url=self._dlq.url, fifo=fifo, concurrency=concurrency, prefetch=10,
            pollers=1, wait_time_seconds=1, visibility_timeout=30, max_receive_count=max_receive_count,
            retry_base_seconds=retry_seconds, retry_max_seconds=max(retry_seconds, 1.0), delete_linger=0.005,
            shutdown_grace=5, poll_error_backoff_max=0.05, poll_drain_seconds=0.2,
        )  # fmt: skip
        func = router(target, self._executor, RetryPolicy.of(config)) if isinstance(target, App) else target
        self.engine = Engine(as_client(self.sqs), config, adapt(func, self._executor))
        self._settings = WriterSettings(queue_name=queue_name, aws_region="us-east-1", writer_fast_path=True)
        self._exit = contextlib.AsyncExitStack()
        self._engine_task: asyncio.Task[None] | None = None
        self._writer: httpx.AsyncClient | None = None

    @property
    def writer(self) -> httpx.AsyncClient:
        """An HTTP client on the writer's app (base URL ``http://writer``)."""
        if self._writer is None:
            raise RuntimeError("the stack is not running: use it as `async with InMemoryStack(app) as stack`")
        return self._writer

    async def __aenter__(self) -> Self:
        try:
            import httpx  # noqa: PLC0415 - only the stack needs it: pip install 'conveyor[testing]'
        except ImportError as exc:
            raise RuntimeError("InMemoryStack needs httpx: pip install 'conveyor[testing]'") from exc
        contracts = self._target if isinstance(self._target, App) else None
        app = create_app(self._settings, client=as_client(self.sqs), contracts=contracts)
        await self._exit.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        self._writer = await self._exit.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://writer")
        )
        self._engine_task = asyncio.create_task(self.engine.run(), name="conveyor-engine")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.engine.stop()
            if self._engine_task is not None:
                await asyncio.wait_for(self._engine_task, 15)
        finally:
            await self._exit.aclose()
            self._writer = None
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def drain(self, timeout: float = 5) -> None:  # noqa: ASYNC109 - the test kit's documented call
        """Run until the queue is empty (nothing visible, in flight or waiting for a retry) and no
        handler runs; raises ``TimeoutError`` (saying what is left) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        # A message leaves the queue only once settled (deleted, or dead-lettered then deleted).
        while self._queue.messages:
            if self._engine_task is not None and self._engine_task.done():
                self._engine_task.result()  # the engine stopped: why
                raise RuntimeError("the processor engine stopped")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the queue still has {len(self._queue.messages)} message(s) after {timeout} s "
                    "(retries wait their delay; see stack.queue)"
                )
            await asyncio.sleep(POLL_SECONDS)

    @property
    def queue(self) -> list[Queued]:
        """The messages still on the queue."""
        return [Queued(m.message_id, m.body, _texts(m), m.receive_count) for m in self._queue.messages.values()]

    @property
    def dead_letters(self) -> list[DeadLettered]:
        """What was dead-lettered, oldest first, with each record."""
        found = []
        for stored in self._dlq.messages.values():
            attributes = _texts(stored)
            record = _record(attributes.get(metadata.DEAD_LETTER))
            original = record.get("original_message_id")
            found.append(DeadLettered(original if isinstance(original, str) else stored.message_id, stored.body,
                                      attributes, record))  # fmt: skip
        return found


def _texts(message: StoredMessage) -> dict[str, str]:
    return {name: str(value.get("StringValue", "")) for name, value in message.attributes.items()}


def _record(text: str | None) -> dict[str, Any]:
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
