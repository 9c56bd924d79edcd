"""Copies of accepted messages to a pre-prod queue (``CONVEYOR_MIRROR_QUEUE_URL``), never at the
live path's expense.

A copy is offered only after SQS took the live message and is chosen by the live message id (the
same id is always in or out, at ``CONVEYOR_MIRROR_RATIO``). Offering never waits and never raises:
the copy goes into a bounded buffer, and one task of its own sends the buffer ten at a time, with
one call in flight at most (one connection of the pool, whatever the load). When the buffer is full
the copy is dropped; when the mirror queue fails, the copies of that call are lost. Both are
counted, never retried: ``conveyor_writer_mirror_total{outcome}`` (sent, dropped, failed).

A copy carries the live message's body and attributes, and ``conveyor.mirrored`` (the live message
id). Its FIFO group id is kept; its deduplication id and idempotency key are derived
(``sha256("conveyor.mirror:" + the live one)``; the key ``mirror.<key>``), so that a copy never
collides with the live message or with another environment's own traffic on the mirror queue.
A message with no attribute slot left for ``conveyor.mirrored`` (SQS allows ten) is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from conveyor import metadata
from conveyor.sqs import limits
from conveyor.sqs.errors import SQS_ERRORS, classify
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.sending.outgoing import Outgoing

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = structlog.get_logger("conveyor.writer")
BUFFER_MESSAGES = 1000  # copies waiting at most; beyond, they are dropped (the live path never waits)
STOP_FLUSH_SECONDS = 2.0  # on a stop, the time the copies still buffered get to go
MAX_KEY_CHARS = 255
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
    return text if len(text) <= MAX_KEY_CHARS else derived(key)


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
    """The copies' buffer and their sender (``run`` in the lifespan's task group)."""

    def __init__(
        self, client: SQSClient, url: str, ratio: float, metrics: WriterMetrics, *, fifo: bool, max_bytes: int
    ) -> None:
        self._client = client
        self.url = url
        self._ratio = ratio
        self._fifo = fifo
        self._max_bytes = min(max_bytes, limits.MAX_BATCH_BYTES)
        self._buffer: deque[Copy] = deque()
        self._ready = asyncio.Event()
        self._stopping = False
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
        """Send the buffer until cancelled, one call at a time."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._buffer:
                await self._send(self._take())

    async def stop(self) -> None:
        """Offer no more; give what is buffered a moment to go, then drop the rest (counted)."""
        self._stopping = True
        try:
            async with asyncio.timeout(STOP_FLUSH_SECONDS):
                while self._buffer:
                    await self._send(self._take())
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
        try:
            response = await self._client.send_message_batch(QueueUrl=self.url, Entries=entries)
        except SQS_ERRORS as exc:
            failure = classify(exc)
            log.warning("mirror_send_failed", code=failure.code, copies=len(copies))
            self._counts["failed"].inc(len(copies))
            return
        failed = response.get("Failed", [])
        if failed:
            log.warning("mirror_entries_failed", codes=sorted({f.get("Code", "") for f in failed}), copies=len(failed))
            self._counts["failed"].inc(len(failed))
        self._counts["sent"].inc(len(response.get("Successful", [])))
