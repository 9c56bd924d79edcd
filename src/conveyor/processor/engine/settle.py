"""One owner of a received message's life, from its receive to its end.

Every change of a lease's stage, every slot taken or given back, every entry of the in-flight set,
every idempotency claim released or completion recorded, and every delete or visibility change (the
acker) goes through :class:`Settlement`. The poller, the dispatcher, the heartbeat, the canary reply
and the shutdown call it; none of them touches those parts itself. So the rules hold in one place:

- slots used = messages received and not yet given back by the worker that took them (or by the
  shutdown that released them unstarted);
- a lease stays in the in-flight set (and is extended by the heartbeat while held) until SQS answered
  for good for its delete or visibility change, or it is left to its visibility timeout;
- a message's claim is released before it is visible again (the next delivery finds the key free), and
  a handler's completion is recorded before its delete.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

import structlog

from conveyor import metadata
from conveyor.payloads.fetch import PayloadFetcher
from conveyor.payloads.pointer import Pointer, pointer_or_none
from conveyor.payloads.reclaim import PayloadReclaimer
from conveyor.payloads.store import PayloadStore
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine.acker import Acker
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.engine.lease import InFlight, Lease
from conveyor.processor.engine.outcome import RetryAfter, describe
from conveyor.processor.engine.slots import Slots
from conveyor.processor.metrics import ProcessorMetrics

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.processor")


class Claims(Protocol):
    """What the settlement needs of the idempotency claims (:class:`Dedupe`, or none at all)."""

    def completed(self, lease: Lease, then: Callable[[], None], duplicate: Callable[[], None]) -> None: ...

    def failed(self, lease: Lease, then: Callable[[], None]) -> None: ...


class NoClaims:
    """Without an idempotency store: nothing to record or release, the next step follows at once."""

    def completed(self, lease: Lease, then: Callable[[], None], duplicate: Callable[[], None]) -> None:
        then()

    def failed(self, lease: Lease, then: Callable[[], None]) -> None:
        then()


class Settlement:
    """Owns the leases from receive to end (see the module's docstring). An async context manager:
    the acker's batch calls (and the claims' store calls) are flushed when it closes.

    ``hold_delete(lease)``: a completed message's delete may wait for its FIFO group's last message
    (see :meth:`Acker.delete_later`)."""

    def __init__(
        self,
        client: SQSClient,
        config: EngineConfig,
        *,
        inflight: InFlight,
        slots: Slots,
        metrics: ProcessorMetrics,
        dedupe: Dedupe | None = None,
        hold_delete: Callable[[Lease], bool] = lambda _: False,
        payloads: PayloadStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inflight = inflight
        self._slots = slots
        self._metrics = metrics
        self._dedupe = dedupe
        self._claims: Claims = dedupe if dedupe is not None else NoClaims()
        self._hold_delete = hold_delete
        self._fetcher = PayloadFetcher(payloads, metrics, config.payload_buckets)
        self._reclaimer = PayloadReclaimer(payloads if config.payload_delete else None, metrics, own=config.payload_own)
        self._acker = Acker(
            client, config.queue_url, self, metrics,
            linger=config.delete_linger, entry_retries=config.entry_retries, clock=clock,
        )  # fmt: skip

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as entered:  # what started is stopped again if the rest cannot start
            await entered.enter_async_context(self._reclaimer)
            await entered.enter_async_context(self._acker)
            if self._dedupe is not None:
                await entered.enter_async_context(self._dedupe)
            entered.pop_all()  # all started: __aexit__ stops them
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The claims' batchers close first: their answers hand deletes and releases to the acker.
        # Then the acker, whose confirmed deletes hand objects to the reclaimer, which goes last.
        try:
            if self._dedupe is not None:
                await self._dedupe.__aexit__(et, e, tb)
        finally:
            try:
                await self._acker.__aexit__(et, e, tb)
            finally:
                await self._reclaimer.__aexit__(et, e, tb)

    # --- slots: reserved before a receive, given back when a worker is done -------------------------
    @property
    def capacity(self) -> int:
        return self._slots.capacity

    @property
    def slots_used(self) -> int:
        return self._slots.used

    async def reserve(self, n: int) -> None:
        """Wait until ``n`` slots are free and take them (a poller, before it receives)."""
        await self._slots.reserve(n)

    async def give_back(self, n: int) -> None:
        """``n`` slots are free again: a receive held fewer messages, or a worker is done with them."""
        await self._slots.give_back(n)

    async def all_given_back(self) -> None:
        """Wait until no slot is used (every handler has returned)."""
        await self._slots.wait_empty()

    # --- receive and the handler's run ------------------------------------------------------------
    def received(self, lease: Lease) -> None:
        """Held (and extended by the heartbeat) from now on."""
        self._inflight.add(lease)
        self._metrics.received.inc()
        if lease.sent_at is not None:
            lag = time.time() - lease.sent_at.timestamp()
            self._metrics.lag_seconds.observe(max(lag, 0.0))

    def start(self, lease: Lease) -> None:
        """The handler (or the canary reply) is about to run."""
        lease.start()

    def abandon(self, lease: Lease) -> None:
        """Shutdown stopped waiting for a handler whose thread still runs (see :meth:`Lease.abandon`)."""
        lease.abandon()

    def extend(self, lease: Lease, seconds: int, on_ok: Callable[[], None]) -> None:
        """The heartbeat keeps the message invisible ``seconds`` from now."""
        self._acker.extend(lease, seconds, on_ok)

    # --- the ends of a message --------------------------------------------------------------------
    def ack(self, lease: Lease) -> None:
        """The handler succeeded: its completion is recorded, then it is deleted (and once SQS
        confirmed that, its payload's S3 object too)."""
        lease.settle()
        self._reclaimer.handled(lease.receipt_handle, _reclaimable(lease))
        self._complete(lease, then=lambda: self._delete_completed(lease), success=True)

    def release(self, lease: Lease, seconds: int = 0) -> None:
        """Give back a message not handled (never started, or behind a failure of its FIFO group):
        at visibility 0 it is delivered again at once, to this or another processor, without waiting
        out the timeout (SQS has counted the receive all the same)."""
        lease.settle()
        self._metrics.released.inc()
        self._back_to_queue(lease, seconds)

    def release_completed(self, lease: Lease, seconds: int) -> None:
        """A message the handler reported fine that goes back behind a failure of its FIFO group,
        to keep the order: its key is recorded as completed all the same (its claim is not released),
        so when the group comes back the message is skipped as a duplicate, not run again."""
        lease.settle()
        self._metrics.released.inc()
        self._complete(lease, then=lambda: self._acker.make_visible(lease, seconds), success=False)

    def retry(self, lease: Lease, outcome: RetryAfter) -> int:
        """Visible again in ``outcome.seconds``; returns them."""
        lease.settle()
        self._metrics.count_retry(outcome.error)
        if outcome.parked:  # a permanent error with no DLQ to take it, or a copy that can never fit
            log.error("message_parked", error=describe(outcome.error), retry_in=outcome.seconds)
        else:
            log.warning("handler_failed_retrying", error=describe(outcome.error), retry_in=outcome.seconds,
                        receive_count=lease.receive_count)  # fmt: skip
        self._back_to_queue(lease, outcome.seconds)
        return outcome.seconds

    def duplicate(self, lease: Lease) -> None:
        """Its key was completed before: deleted without running the handler."""
        lease.settle()
        self._metrics.duplicates_skipped.inc()
        log.info("duplicate_skipped", key=lease.dedupe_key)
        self._reclaimer.handled(lease.receipt_handle, _reclaimable(lease))  # (handled before: not fetched now)
        self._acker.delete(lease)

    def defer(self, lease: Lease, seconds: int) -> None:
        """A copy with its key is being handled elsewhere: visible again in ``seconds``."""
        lease.settle()
        self._metrics.duplicates_deferred.inc()
        log.info("duplicate_deferred", key=lease.dedupe_key, retry_in=seconds)
        self._back_to_queue(lease, seconds)  # (a claim it holds, if any, is released first)

    def dead_lettered(self, lease: Lease, reason: str, error: BaseException) -> None:
        """Its copy is in the dead-letter queue: deleted. Dead-lettered is not completed: its claim is
        released first, so that a copy redriven later may run."""
        lease.settle()
        self._metrics.count_dead_letter(reason, error)
        self._claims.failed(lease, then=lambda: self._acker.delete(lease))

    def canary_answered(self, lease: Lease) -> None:
        """A canary was answered: deleted. Not a handler completion: its claim is let go."""
        lease.settle()
        self._claims.failed(lease, then=lambda: self._acker.delete(lease))

    def canary_unanswered(self, lease: Lease, seconds: int) -> None:
        """A canary's reply failed: it comes back in ``seconds`` for another try."""
        lease.settle()
        self._back_to_queue(lease, seconds)

    def forget(self, lease: Lease) -> None:
        """After an error of ours: stop holding what has no outcome yet; it comes back when its
        visibility ends (never deleted unprocessed, never lost)."""
        lease.settle()
        self._claims.failed(lease, then=lambda: None)
        self._inflight.discard(lease)

    def leave_abandoned(self, lease: Lease) -> None:
        """Its handler's thread still runs: never released (it would run twice at once); it comes
        back when its visibility ends."""
        log.warning("handler_abandoned", message_id=lease.message_id)
        self._inflight.discard(lease)

    # --- FIFO: deletes held for a group's last message -----------------------------------------------
    def send_held(self, group: str) -> None:
        """The group's run here is over: its held deletes go now."""
        self._acker.send_held(group)

    def send_all_held(self) -> None:
        """A stop has begun: every held delete goes now."""
        self._acker.send_all_held()

    # --- what the acker tells back -----------------------------------------------------------------
    def discard(self, lease: Lease) -> None:
        """SQS is done with the lease (deleted, visible again, or no longer ours): not held any more."""
        self._reclaimer.forget(lease.receipt_handle)
        self._inflight.discard(lease)

    def deleted(self, lease: Lease) -> None:
        """SQS confirmed the delete: a handled message's payload object goes now (never before)."""
        self._reclaimer.deleted(lease.receipt_handle)

    async def fetch_payloads(self, leases: Sequence[Lease]) -> dict[str, BaseException]:
        """The payloads stored in S3 of the messages about to run (see :mod:`conveyor.payloads.fetch`)."""
        return await self._fetcher.fetch(leases)

    # --- inside ---------------------------------------------------------------------------------------
    def _back_to_queue(self, lease: Lease, seconds: int) -> None:
        """Visible again in ``seconds``, its claim (if any) released first."""
        self._claims.failed(lease, then=lambda: self._acker.make_visible(lease, seconds))

    def _delete_completed(self, lease: Lease) -> None:
        if self._hold_delete(lease):
            self._acker.delete_later(lease)
        else:
            self._acker.delete(lease)
            self._acker.send_held(lease.group)

    def _complete(self, lease: Lease, then: Callable[[], None], *, success: bool) -> None:
        """The handler succeeded: its completion is recorded, then ``then``; counted as a success
        (``success``), unless this lease's claim was lost to another process while the handler ran:
        the handler has then run twice for the key, and that is counted and logged."""
        duplicate = False

        def on_duplicate() -> None:
            nonlocal duplicate
            duplicate = True
            self._metrics.duplicates_completed.inc()
            log.error("duplicate_completed", key=lease.dedupe_key, message_id=lease.message_id)

        def recorded() -> None:
            if success and not duplicate:
                self._metrics.succeeded.inc()
            then()

        self._claims.completed(lease, then=recorded, duplicate=on_duplicate)


def _reclaimable(lease: Lease) -> Pointer | None:
    """The object a handled (or duplicate) message gives back; none for a mirror's copy: it is the live one's."""
    mirrored = metadata.MIRRORED in lease.attributes
    return None if mirrored else lease.pointer or pointer_or_none(lease.body, lease.attributes)
