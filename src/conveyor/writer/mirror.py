"""Copies of accepted messages to a pre-prod queue (``CONVEYOR_MIRROR_QUEUE_URL``), never at the
live path's expense.

A copy is offered only after SQS took the live message and is chosen by the live message id (the
same id is always in or out, at ``CONVEYOR_MIRROR_RATIO``). Offering never waits and never raises:
the copy goes into a bounded buffer, and senders of their own send the buffer ten at a time, with
:data:`SENDERS` calls in flight at most (that many connections of the pool, whatever the load).
Copies are dropped when the buffer is full, and while the writer's event loop is saturated (the
live path comes first); when the mirror queue fails, the copies of that call are lost and the
senders back off. All of it is counted, never retried: ``conveyor_writer_mirror_total{outcome}``
(sent, dropped, failed).

A copy carries the live message's body and attributes, and ``conveyor.mirrored`` (the live message
id). Its FIFO group id is kept; its deduplication id and idempotency key are derived
(``sha256("conveyor.mirror:" + the live one)``; the key ``mirror.<key>``), so that a copy never
collides with the live message or with another environment's own traffic on the mirror queue.
A message with no attribute slot left for ``conveyor.mirrored`` (SQS allows ten) is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from conveyor import metadata
from conveyor.sqs import limits
from conveyor.sqs.errors import SQS_ERRORS, classify
from conveyor.sqs.send_batch import BatchSender
from conveyor.writer.api.schemas import MAX_IDEMPOTENCY_KEY_CHARS
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.sending.outgoing import Outgoing

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = structlog.get_logger("conveyor.writer")
BUFFER_MESSAGES = 1000  # copies waiting at most; beyond, they are dropped (the live path never waits)
STOP_FLUSH_SECONDS = 2.0  # on a stop, the time the copies still buffered get to go
SENDERS = 4  # calls in flight at most: enough to follow a busy writer, bounded whatever the load
BACKOFF_BASE_SECONDS = 0.1  # after a failed call, before the next (copies arriving meanwhile fill the buffer)
BACKOFF_MAX_SECONDS = 10.0
BUSY_LAG_SECONDS = 0.02  # a loop pass this long: the writer is saturated, copies are dropped (never the live path)
OUTCOMES = ("sent", "dropped", "failed")


def chosen(message_id: str, ratio: float) -> bool:
    """Whether the message with ``message_id`` is copied: the same id, the same answer, every time."""
    if ratio >= 1:
        return True
    point = int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:8]) / 2**64
    return point < ratio


def derived(value: str) -> str:
    """A deduplication id of the copy's own (hex: valid wherever the live one was)."""
    return hashlib.sha256(f"conveyor.mirror:{value}".encode()).hexdigest()


def mirrored_key(key: str) -> str:
    text = f"mirror.{key}"
    return text if len(text) <= MAX_IDEMPOTENCY_KEY_CHARS else derived(key)


@dataclass(frozen=True, slots=True)
class Copy:
    entry: SendMessageBatchRequestEntryTypeDef  # without its Id
    size: int


def copy_of(outgoing: Outgoing, message_id: str, fifo: bool) -> Copy | None:
    """The copy of an accepted message, or None when no attribute slot is left for the mark."""
    if len(outgoing.attributes) >= limits.MAX_ATTRIBUTES:
        return None
    attributes: dict[str, Any] = dict(outgoing.attributes)
    attributes[metadata.MIRRORED] = {"DataType": "String", "StringValue": message_id}
    key = attributes.get(metadata.IDEMPOTENCY_KEY)
    if key is not None:
        attributes[metadata.IDEMPOTENCY_KEY] = {"DataType": "String", "StringValue": mirrored_key(key["StringValue"])}
    entry: Any = {"MessageBody": outgoing.body, "MessageAttributes": attributes}
    if outgoing.delay_seconds is not None and not fifo:
        entry["DelaySeconds"] = outgoing.delay_seconds
    if fifo:
        entry["MessageGroupId"] = outgoing.group_id
        entry["MessageDeduplicationId"] = derived(outgoing.deduplication_id or message_id)
    return Copy(entry, limits.message_bytes(outgoing.body, attributes))


class Mirror:
    """The copies' buffer and their senders (``run`` in the lifespan's task group)."""

    def __init__(
        self,
        client: SQSClient,
        url: str,
        ratio: float,
        metrics: WriterMetrics,
        *,
        fifo: bool,
        max_bytes: int,
        direct: bool = False,
    ) -> None:
        self._client = client
        # With a real aiobotocore client, as the live path does: SendMessageBatch without its per-call preparation.
        self._batch_sender = BatchSender(client) if direct else None
        self.url = url
        self._ratio = ratio
        self._fifo = fifo
        self._max_bytes = min(max_bytes, limits.MAX_BATCH_BYTES)
        self._buffer: deque[Copy] = deque()
        self._ready = asyncio.Event()
        self._stopping = False
        self._failures = 0  # calls failed in a row: the senders back off
        self._calls = 0  # calls in flight
        self._shedding = False  # dropping copies while the event loop is busy (logged once per spell)
        self._call_ended = asyncio.Event()  # (a stop waits for the buffer to drain)
        self._counts = {outcome: metrics.mirror.labels(outcome) for outcome in OUTCOMES}  # all shown from 0

    def offer(self, outgoing: Outgoing, message_id: str) -> None:
        """The live message was accepted: copy it, if chosen and if there is room. Never raises."""
        try:
            if not chosen(message_id, self._ratio):
                return
            copy = copy_of(outgoing, message_id, self._fifo)
            if copy is None or copy.size > self._max_bytes or len(self._buffer) >= BUFFER_MESSAGES or self._stopping:
                self._counts["dropped"].inc()
                return
            self._buffer.append(copy)
            self._ready.set()
        except Exception:
            log.exception("mirror_offer_failed")

    async def run(self) -> None:
        """Send the buffer until cancelled: a few calls in flight at most (a few of the pool's connections)."""
        async with asyncio.TaskGroup() as group:
            for _ in range(SENDERS):
                group.create_task(self._sender())

    async def _sender(self) -> None:
        while True:
            await self._ready.wait()
            while self._buffer:
                busy = await _loop_lag() > BUSY_LAG_SECONDS and not self._stopping
                copies = self._take()  # (after the await: another sender may have taken them all)
                if not copies:
                    break
                if busy:
                    self._shed(copies)  # the writer is CPU-bound: the live path comes first
                    continue
                await self._send(copies)
                if self._failures:  # a mirror queue that fails is not called at full pace
                    await asyncio.sleep(_backoff(self._failures))
            self._ready.clear()

    async def stop(self) -> None:
        """Offer no more; give what is buffered a moment to go (the senders go on meanwhile), then
        drop the rest (counted). Called before the senders are cancelled."""
        self._stopping = True
        try:
            async with asyncio.timeout(STOP_FLUSH_SECONDS):
                while self._buffer or self._calls:
                    self._call_ended.clear()
                    await self._call_ended.wait()
        except TimeoutError:
            pass
        self._counts["dropped"].inc(len(self._buffer))
        self._buffer.clear()

    def _take(self) -> list[Copy]:
        taken: list[Copy] = []
        size = 0
        while self._buffer and len(taken) < limits.MAX_BATCH_ENTRIES:
            if taken and size + self._buffer[0].size > self._max_bytes:
                break
            copy = self._buffer.popleft()
            taken.append(copy)
            size += copy.size
        return taken

    async def _send(self, copies: Sequence[Copy]) -> None:
        entries: list[Any] = [{"Id": str(i), **copy.entry} for i, copy in enumerate(copies)]
        self._calls += 1
        try:
            response = await self._call(entries)
        except asyncio.CancelledError:
            self._counts["failed"].inc(len(copies))  # (a stop cut the call short: its copies are lost)
            raise
        except SQS_ERRORS as exc:
            self._failed(classify(exc).code, len(copies))
            return
        except Exception:  # an error of ours must not end the senders (nor the writer's lifespan with them)
            log.exception("mirror_send_error")
            self._failed("error", len(copies))
            return
        finally:
            self._calls -= 1
            self._call_ended.set()
        if self._failures:
            log.info("mirror_recovered", after_failures=self._failures)
        self._failures = 0
        self._shedding = False
        failed = response.get("Failed", [])
        if failed:
            log.warning("mirror_entries_failed", codes=sorted({f.get("Code", "") for f in failed}), copies=len(failed))
            self._counts["failed"].inc(len(failed))
        self._counts["sent"].inc(len(response.get("Successful", [])))

    async def _call(self, entries: list[Any]) -> Mapping[str, Any]:
        if self._batch_sender is not None:
            return await self._batch_sender(self.url, entries)
        return await self._client.send_message_batch(QueueUrl=self.url, Entries=entries)

    def _shed(self, copies: Sequence[Copy]) -> None:
        if not self._shedding:
            log.info("mirror_shedding", detail="the writer is busy: copies are dropped while it is")
        self._shedding = True
        self._counts["dropped"].inc(len(copies))

    def _failed(self, code: str, copies: int) -> None:
        self._failures += 1
        if self._failures == 1:  # once per outage, not once per call
            log.warning("mirror_send_failed", code=code, copies=copies, detail="copies are dropped until it heals")
        self._counts["failed"].inc(copies)


async def _loop_lag() -> float:
    """How long one pass of the event loop takes now: the callbacks ready ahead of this one. A writer
    whose loop is saturated is CPU-bound, and a copy sent then is live throughput lost."""
    started = time.perf_counter()
    await asyncio.sleep(0)
    return time.perf_counter() - started


def _backoff(failures: int) -> float:
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(failures - 1, 16)) * (0.5 + random.random() / 2)
