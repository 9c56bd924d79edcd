"""Deletes and visibility changes, coalesced across handlers into batch calls.

Callers do not wait: they hand over a lease and the outcome is settled when the batch call answers
(``Failed`` is read). Three operations, one word each:

- ``delete``: the message is done. A delete that fails for a reason that can heal (throttling, SQS
  down) is sent again with backoff until the message's visibility deadline: a lost delete means the
  message is handled again (and a dead-letter copy would be made twice).
- ``extend``: the heartbeat keeps a message invisible. One extension per lease at a time; a failed
  one is tried again on the next tick, unless SQS says the message is no longer held.
- ``make_visible``: the message goes back to the queue after some seconds (a retry, or a message
  never started); its holder (the settlement) is told once SQS answered.
- ``delete_later`` / ``send_held`` (FIFO): a done message whose group still has later messages here
  is deleted with the group's last one, in the same call. SQS delivers nothing more of a group while
  any of its messages is in flight, so this delays nothing, and a run of ten costs one
  DeleteMessageBatch, whatever the timing of the completions (a linger catches only those that end
  close together). A held delete goes at the latest ``HELD_DELETE_MAX_SECONDS`` after it was held
  or halfway to the message's visibility deadline, whichever comes first: a kill -9 meanwhile runs
  the done messages again (at least once), so the hold stays short.

A refused delete or visibility change means SQS may deliver the message again: logged and counted,
never hidden.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import structlog

from conveyor.processor.engine.lease import Lease
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.sqs.batch_call import EntryResult, call_batch
from conveyor.sqs.batcher import Batcher
from conveyor.sqs.errors import SqsError, receipt_gone
from conveyor.sqs.limits import MAX_BATCH_ENTRIES

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.processor")
DELETE_RETRY_BASE_SECONDS = 0.2
DELETE_RETRY_MAX_SECONDS = 5.0
HELD_DELETE_MAX_SECONDS = 2.0  # FIFO: the longest a done message's delete waits for its group's run

type Entry = Mapping[str, Any]


class Holder(Protocol):
    """Who holds the leases (the settlement): told when SQS is done with one."""

    def discard(self, lease: Lease) -> None:
        """Deleted, visible again, or no longer ours: not held any more."""

    def deleted(self, lease: Lease) -> None:
        """SQS confirmed the message's delete (then :meth:`discard` follows)."""


class Acker:
    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        holder: Holder,
        metrics: ProcessorMetrics,
        *,
        linger: float,
        entry_retries: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self._holder = holder
        self._metrics = metrics
        self._retries = entry_retries
        self._clock = clock
        self._deletes: Batcher[Entry, EntryResult] = Batcher(self._flush("delete_message_batch"), linger=linger)
        self._changes: Batcher[Entry, EntryResult] = Batcher(
            self._flush("change_message_visibility_batch"), linger=linger
        )
        self._again = asyncio.TaskGroup()  # deletes waiting to be sent again
        self._held: dict[str, list[Lease]] = {}  # FIFO group -> done messages whose delete waits for the group's last
        self._held_timers: dict[str, asyncio.TimerHandle] = {}
        self._closing = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self._deletes.__aenter__()
        await self._changes.__aenter__()
        await self._again.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Held and re-sent deletes go now, once more; then what is pending is flushed.
        self.send_all_held()
        self._closing.set()
        try:
            await self._again.__aexit__(et, e, tb)
        finally:
            try:
                await self._changes.__aexit__(et, e, tb)
            finally:
                await self._deletes.__aexit__(et, e, tb)

    def _flush(self, operation: str) -> Callable[[Sequence[Entry]], Awaitable[list[EntryResult]]]:
        """The batch call behind one of the batchers (DeleteMessageBatch, ChangeMessageVisibilityBatch)."""
        method = getattr(self._client, operation)

        async def call(batch: list[Any]) -> Any:
            return await method(QueueUrl=self._queue_url, Entries=batch)

        async def flush(entries: Sequence[Entry]) -> list[EntryResult]:
            return await call_batch(call, entries, self._retries)

        return flush

    # --- delete ---------------------------------------------------------------------------------
    def delete(self, lease: Lease, attempt: int = 0) -> None:
        """Delete the message; the lease leaves the in-flight set once SQS answered for good."""
        future = self._deletes.submit_nowait({"ReceiptHandle": lease.receipt_handle})
        future.add_done_callback(lambda f: self._deleted(lease, f, attempt))

    def delete_later(self, lease: Lease) -> None:
        """FIFO: delete the message together with the next :meth:`send_held` of its group (at the
        latest halfway to its visibility deadline: the heartbeat no longer extends a done message)."""
        group = lease.group
        held = self._held.setdefault(group, [])
        held.append(lease)
        if len(held) >= MAX_BATCH_ENTRIES:
            self.send_held(group)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + min(HELD_DELETE_MAX_SECONDS, max(0.0, (lease.visible_until - self._clock()) / 2))
        timer = self._held_timers.get(group)
        if timer is None or due < timer.when():  # the earliest deadline of the group's held messages
            if timer is not None:
                timer.cancel()
            self._held_timers[group] = loop.call_at(due, self.send_held, group)

    def send_held(self, group: str) -> None:
        """Delete the held messages of ``group`` now (the group has nothing more waiting here)."""
        if (timer := self._held_timers.pop(group, None)) is not None:
            timer.cancel()
        for lease in self._held.pop(group, ()):
            self.delete(lease)

    def send_all_held(self) -> None:
        """Delete every held message now (a stop has begun: holding gains nothing any more)."""
        for group in list(self._held):
            self.send_held(group)

    def _deleted(self, lease: Lease, future: asyncio.Future[EntryResult], attempt: int) -> None:
        error = _error_of(future)
        if error is not None:
            delay = _backoff(attempt)
            if self._may_delete_again(lease, error, delay):
                log.warning("delete_failed_retrying", message_id=lease.message_id, code=error.failure.code)
                self._again.create_task(self._delete_again(lease, attempt + 1, delay))
                return
            self._lost(lease, "delete", error)
        else:
            self._holder.deleted(lease)
        self._holder.discard(lease)

    def _may_delete_again(self, lease: Lease, error: SqsError, delay: float) -> bool:
        """Worth another try: a failure that can heal, before SQS gives the message to someone else."""
        in_time = self._clock() + delay < lease.visible_until
        return error.failure.retryable and in_time and not self._closing.is_set()

    async def _delete_again(self, lease: Lease, attempt: int, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._closing.wait()  # shutting down: send it now
        except TimeoutError:
            pass
        self.delete(lease, attempt)

    # --- visibility -----------------------------------------------------------------------------
    def extend(self, lease: Lease, seconds: int, on_ok: Callable[[], None]) -> None:
        """Keep the message invisible ``seconds`` from now (capped at what SQS accepts)."""
        lease.extending += 1
        future = self._change(lease, seconds)
        future.add_done_callback(lambda f: self._extended(lease, f, on_ok))

    def _extended(self, lease: Lease, future: asyncio.Future[EntryResult], on_ok: Callable[[], None]) -> None:
        lease.extending -= 1
        error = _error_of(future)
        if error is None:
            on_ok()
        elif receipt_gone(error.failure):
            self._lost(lease, "change_visibility", error)
            self._holder.discard(lease)
        else:  # throttling, a timeout: the next heartbeat tick tries again
            log.warning("extension_failed", message_id=lease.message_id, code=error.failure.code)

    def make_visible(self, lease: Lease, seconds: int) -> None:
        """Give the message back to the queue, visible again in ``seconds`` (0: at once)."""
        future = self._change(lease, seconds)
        future.add_done_callback(lambda f: self._made_visible(lease, f))

    def _made_visible(self, lease: Lease, future: asyncio.Future[EntryResult]) -> None:
        error = _error_of(future)
        if error is not None:
            self._lost(lease, "change_visibility", error)
        self._holder.discard(lease)

    def _change(self, lease: Lease, seconds: int) -> asyncio.Future[EntryResult]:
        seconds = max(0, min(seconds, lease.visibility_cap(self._clock())))
        return self._changes.submit_nowait({"ReceiptHandle": lease.receipt_handle, "VisibilityTimeout": seconds})

    def _lost(self, lease: Lease, operation: str, error: SqsError) -> None:
        self._metrics.lost.labels(operation).inc()
        log.warning(
            "sqs_entry_failed",
            operation=operation,
            message_id=lease.message_id,
            code=error.failure.code,
            error=error.failure.message,
        )


def _backoff(attempt: int) -> float:
    ceiling = min(DELETE_RETRY_MAX_SECONDS, DELETE_RETRY_BASE_SECONDS * 2.0 ** min(attempt, 16))
    return ceiling * (0.5 + random.random() / 2)


def _error_of(future: asyncio.Future[EntryResult]) -> SqsError | None:
    if future.cancelled():
        return SqsError.cancelled()
    exc = future.exception()
    if exc is None:
        result = future.result()
        return result if isinstance(result, SqsError) else None
    return exc if isinstance(exc, SqsError) else SqsError.unexpected(exc)
