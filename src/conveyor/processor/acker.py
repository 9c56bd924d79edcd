"""Deletes and visibility changes, coalesced across handlers into batch calls.

Callers do not wait: they hand over a lease and the outcome is settled when the batch call answers
(``Failed`` is read; a refused delete means SQS may deliver the message again, which is logged and
counted, never hidden).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import structlog

from conveyor.processor.lease import InFlight, Lease
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.sqs.batch_call import EntryResult, call_batch
from conveyor.sqs.batcher import Batcher
from conveyor.sqs.errors import SqsError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.processor")


class Acker:
    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        inflight: InFlight,
        metrics: ProcessorMetrics,
        *,
        linger: float,
        entry_retries: int = 2,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self._inflight = inflight
        self._metrics = metrics
        self._retries = entry_retries
        self._deletes: Batcher[Mapping[str, Any], EntryResult] = Batcher(
            self._flush("delete_message_batch"), linger=linger
        )
        self._changes: Batcher[Mapping[str, Any], EntryResult] = Batcher(
            self._flush("change_message_visibility_batch"), linger=linger
        )

    async def __aenter__(self) -> Self:
        await self._deletes.__aenter__()
        await self._changes.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._changes.__aexit__(et, e, tb)
        finally:
            await self._deletes.__aexit__(et, e, tb)

    def _flush(self, operation: str) -> Callable[[Sequence[Mapping[str, Any]]], Awaitable[list[EntryResult]]]:
        """The batch call behind one of the batchers (DeleteMessageBatch, ChangeMessageVisibilityBatch)."""
        method = getattr(self._client, operation)

        async def call(batch: list[Any]) -> Any:
            return await method(QueueUrl=self._queue_url, Entries=batch)

        async def flush(entries: Sequence[Mapping[str, Any]]) -> list[EntryResult]:
            return await call_batch(call, entries, self._retries)

        return flush

    def delete(self, lease: Lease) -> asyncio.Future[EntryResult]:
        """Delete the message; the lease leaves the in-flight set once SQS answered."""
        future = self._deletes.submit_nowait({"ReceiptHandle": lease.receipt_handle})
        future.add_done_callback(lambda f: self._settled(lease, f, "delete", release=True))
        return future

    def change_visibility(
        self, lease: Lease, seconds: int, *, release: bool, on_ok: Callable[[], None] | None = None
    ) -> asyncio.Future[EntryResult]:
        """Set the message's visibility timeout to ``seconds`` from now. ``release``: the message is
        given back to the queue (retry later, or never started), so it leaves the in-flight set."""
        entry = {"ReceiptHandle": lease.receipt_handle, "VisibilityTimeout": seconds}
        future = self._changes.submit_nowait(entry)
        future.add_done_callback(lambda f: self._settled(lease, f, "change_visibility", release=release, on_ok=on_ok))
        return future

    def _settled(
        self,
        lease: Lease,
        future: asyncio.Future[EntryResult],
        operation: str,
        *,
        release: bool,
        on_ok: Callable[[], None] | None = None,
    ) -> None:
        error = _error_of(future)
        if error is None and on_ok is not None:
            on_ok()
        if release or error is not None:
            self._inflight.discard(lease)
            self._metrics.in_flight.set(len(self._inflight))
        if error is not None:
            self._metrics.lost.labels(operation).inc()
            log.warning(
                "sqs_entry_failed",
                operation=operation,
                message_id=lease.message_id,
                code=error.failure.code,
                error=error.failure.message,
            )


def _error_of(future: asyncio.Future[EntryResult]) -> SqsError | None:
    if future.cancelled():
        return SqsError.cancelled()
    exc = future.exception()
    if exc is None:
        result = future.result()
        return result if isinstance(result, SqsError) else None
    return exc if isinstance(exc, SqsError) else SqsError.unexpected(exc)
