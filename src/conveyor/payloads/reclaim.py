"""The processor's side, after the message: the S3 objects of handled messages are deleted.

Only once SQS confirmed the message's delete (an object deleted first would leave a message that can
never be handled, if its delete then failed), and only for messages that were handled (or skipped as
handled before): a dead-lettered message keeps its pointer, and its object stays until the copy is
redriven and handled. The deletes are gathered into DeleteObjects calls (up to 1,000 keys, per
bucket). A delete that fails is logged and counted, not retried: the object is of no use any more
and the bucket's lifecycle rule expires it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import structlog

from conveyor.payloads.errors import PayloadStoreError
from conveyor.payloads.pointer import Pointer
from conveyor.payloads.store import MAX_DELETE_KEYS, PayloadStore
from conveyor.sqs.batcher import Batcher, BatcherClosedError
from conveyor.sqs.metrics import SqsCallMetrics

log = structlog.get_logger("conveyor.processor")
LINGER_SECONDS = 0.2  # deletes of handled payloads wait this long for company (nothing waits on them)


class PayloadReclaimer:
    """Deletes handled payloads' objects, batched (an async context manager: leaving it sends what
    waits). Without a store (no S3, or ``CONVEYOR_PAYLOAD_DELETE=false``) it deletes nothing."""

    def __init__(
        self,
        store: PayloadStore | None,
        metrics: SqsCallMetrics,
        *,
        own: tuple[str, str] | None = None,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self._store = store
        # (bucket, prefix): only objects there are deleted (the writer's own; another producer's objects,
        # or those of a pointer someone forged, are never this processor's to delete). None: any (tests).
        self._own = own
        self._metrics = metrics
        self._batcher: Batcher[Pointer, bool] = Batcher(self._flush, linger=linger, max_entries=MAX_DELETE_KEYS)
        self._handled: dict[str, Pointer] = {}  # receipt handle -> the object to delete once its delete is confirmed

    async def __aenter__(self) -> Self:
        await self._batcher.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._batcher.__aexit__(et, e, tb)

    def handled(self, receipt_handle: str, pointer: Pointer | None) -> None:
        """The message was handled: once its delete is confirmed (:meth:`deleted`), its object goes."""
        if pointer is not None and self._store is not None and self._owns(pointer):
            self._handled[receipt_handle] = pointer

    def _owns(self, pointer: Pointer) -> bool:
        if self._own is None:
            return True
        bucket, prefix = self._own
        return pointer.bucket == bucket and pointer.key.startswith(prefix)

    def deleted(self, receipt_handle: str) -> None:
        """SQS confirmed the message's delete."""
        if (pointer := self._handled.pop(receipt_handle, None)) is not None:
            self._reclaim(pointer)

    def forget(self, receipt_handle: str) -> None:
        """The message is no longer held (its delete failed, or it went back to the queue): its object stays."""
        self._handled.pop(receipt_handle, None)

    def _reclaim(self, pointer: Pointer) -> None:
        try:
            future = self._batcher.submit_nowait(pointer)
        except BatcherClosedError:  # (a delete confirmed after the stop's last flush)
            log.warning("payload_delete_skipped", location=pointer.location)
            return
        future.add_done_callback(_retrieve)

    async def _flush(self, pointers: Sequence[Pointer]) -> list[bool]:
        assert self._store is not None  # noqa: S101 - nothing is handed over without one
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for pointer in pointers:
            by_bucket[pointer.bucket].append(pointer.key)
        failed: set[tuple[str, str]] = set()
        for bucket, keys in by_bucket.items():
            try:
                failed.update((bucket, key) for key in await self._store.delete(bucket, keys))
            except PayloadStoreError as exc:
                log.warning("payload_delete_failed", bucket=bucket, objects=len(keys), code=exc.code)
                failed.update((bucket, key) for key in keys)
        results = [(p.bucket, p.key) not in failed for p in pointers]
        self._metrics.payloads.labels("deleted").inc(sum(results))
        if len(results) > sum(results):
            self._metrics.payloads.labels("delete_failed").inc(len(results) - sum(results))
        return results


def _retrieve(future: asyncio.Future[bool]) -> None:
    if not future.cancelled():
        future.exception()  # (an error of ours is logged by the batcher's task group, not here)
