"""The processor's side, before the handler: a message whose payload is in S3 gets it.

The fetch runs while the message is held (the heartbeat keeps it invisible during the download) and
after the idempotency claims (a copy already handled is skipped without a download). A payload that
cannot be fetched is the message's error, decided like a handler's (see :mod:`conveyor.payloads.errors`):
gone for good, the message is dead-lettered at once; S3 failing, it is retried with backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import structlog

from conveyor.payloads.errors import PayloadMissingError, PayloadStoreError, PayloadUnreadableError
from conveyor.payloads.pointer import Pointer, PointerError, pointer_of
from conveyor.payloads.store import PayloadStore
from conveyor.sqs.metrics import SqsCallMetrics

log = structlog.get_logger("conveyor.processor")


class Offloaded(Protocol):
    """A held message as the fetch sees it (the engine's lease)."""

    @property
    def message_id(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def attributes(self) -> dict[str, object]: ...
    def take_payload(self, pointer: Pointer, text: str) -> None: ...


class PayloadFetcher:
    """Fetches the payloads of a handler call's messages, all at once."""

    def __init__(
        self, store: PayloadStore | None, metrics: SqsCallMetrics, buckets: frozenset[str] | None = None
    ) -> None:
        self._store = store  # None: no S3 client (a processor built without one: pointers cannot be read)
        self._metrics = metrics
        # The buckets pointers may name (CONVEYOR_PAYLOAD_BUCKET, CONVEYOR_PAYLOAD_READ_BUCKETS): a pointer
        # elsewhere is any sender's way to have the handler read (and the processor delete) what it may.
        self._buckets = buckets  # None: any (tests)

    async def fetch(self, messages: Sequence[Offloaded]) -> dict[str, BaseException]:
        """Give each offloaded message its payload; returns the errors of those that could not get it."""
        errors: dict[str, BaseException] = {}
        todo: list[tuple[Offloaded, Pointer]] = []
        for message in messages:
            try:
                pointer = pointer_of(message.body, message.attributes)  # type: ignore[arg-type]
            except PointerError as exc:
                errors[message.message_id] = PayloadUnreadableError(str(exc))
                self._metrics.payloads.labels("missing").inc()
                continue
            if pointer is not None and self._buckets is not None and pointer.bucket not in self._buckets:
                errors[message.message_id] = PayloadUnreadableError(
                    f"{pointer.location}: the bucket is not one this processor reads (CONVEYOR_PAYLOAD_BUCKET,"
                    " CONVEYOR_PAYLOAD_READ_BUCKETS)"
                )
                self._metrics.payloads.labels("missing").inc()
            elif pointer is not None:
                todo.append((message, pointer))
        if todo:
            async with asyncio.TaskGroup() as group:
                for message, pointer in todo:
                    group.create_task(self._one(message, pointer, errors))
        return errors

    async def _one(self, message: Offloaded, pointer: Pointer, errors: dict[str, BaseException]) -> None:
        if self._store is None:
            errors[message.message_id] = PayloadStoreError("GetObject", "NoClient", "no S3 client in this processor")
            return
        try:
            text = await self._store.get_text(pointer)
        except (PayloadMissingError, PayloadUnreadableError) as exc:
            self._metrics.payloads.labels("missing").inc()
            log.error("payload_missing", message_id=message.message_id, location=pointer.location, error=str(exc))
            errors[message.message_id] = exc
            return
        except PayloadStoreError as exc:
            log.warning("payload_fetch_failed", message_id=message.message_id, location=pointer.location, code=exc.code)
            errors[message.message_id] = exc
            return
        except Exception as exc:  # an error of ours: this message's, retried, never its batch's
            log.exception("payload_fetch_error", message_id=message.message_id, location=pointer.location)
            errors[message.message_id] = PayloadStoreError("GetObject", type(exc).__name__, str(exc))
            return
        self._metrics.payloads.labels("fetched").inc()
        self._metrics.payload_bytes.labels("fetched").inc(len(text) if text.isascii() else len(text.encode()))
        message.take_payload(pointer, text)
