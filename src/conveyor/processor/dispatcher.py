"""Runs the handler on each buffered message, ``concurrency`` at a time, and applies the outcome.

Concurrency is the number of workers, independent of the receive batch size: one slow message
never holds up the others of its batch. A worker frees its slot as soon as the handler returns;
the delete or visibility change is coalesced by the acker and settled without blocking the worker.
A worker never dies of what a handler does: every exception (``CancelledError`` included, unless the
worker itself is being cancelled) becomes an outcome.

On shutdown (:meth:`Dispatcher.drain`): what is buffered is released at visibility 0, running
handlers get the grace period, then what still runs is cancelled and its message released, except a
plain function's thread, which cannot be stopped: that message is left to its visibility timeout.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from conveyor.canary.reply import CanaryResponder
from conveyor.metadata import TRACEPARENT
from conveyor.processor.acker import Acker
from conveyor.processor.buffer import Buffer
from conveyor.processor.config import EngineConfig
from conveyor.processor.dead_letter import DeadLetterQueue, DeadLetterTooLargeError
from conveyor.processor.dedupe import Dedupe
from conveyor.processor.invoke import Invoker
from conveyor.processor.lease import Lease, Stage
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.outcome import (
    Ack,
    DeadLetter,
    Defer,
    Duplicate,
    Outcome,
    RetryAfter,
    RetryPolicy,
    before_handler,
    decide,
    describe,
)
from conveyor.processor.slots import Slots
from conveyor.processor.user_code import BatchHandler, Handler
from conveyor.sqs.errors import SQS_ERRORS, classify
from conveyor.sqs.limits import MAX_BATCH_ENTRIES
from conveyor.tracing import NO_TRACING, Carried, NoTracing, Recorder, Tracing

log = structlog.get_logger("conveyor.processor")
type Stopped = dict[str, int]  # FIFO: group -> seconds until the message it waits for is visible again


@dataclass(slots=True)
class Admission:
    """Keyed by lease (``id``), not by message id: two deliveries of one message can meet in a batch."""

    decided: dict[int, Outcome] = field(default_factory=dict)  # lease -> outcome without the handler
    behind: set[int] = field(default_factory=set)  # FIFO: leases after a deferred one of their group

    def runs(self, lease: Lease) -> bool:
        return id(lease) not in self.decided and id(lease) not in self.behind


CANCEL_WAIT_SECONDS = 1.0  # after cancelling the workers, before cancelling the stragglers again
COPY_ERRORS: tuple[type[BaseException], ...] = (DeadLetterTooLargeError, *SQS_ERRORS)


class Dispatcher:
    def __init__(
        self,
        config: EngineConfig,
        handler: Handler | BatchHandler,
        *,
        stopping: asyncio.Event,
        buffer: Buffer,
        slots: Slots,
        acker: Acker,
        dead_letters: DeadLetterQueue | None,
        metrics: ProcessorMetrics,
        dedupe: Dedupe | None = None,
        canary: CanaryResponder | None = None,
        tracing: NoTracing | Tracing = NO_TRACING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracing = tracing
        self._destination = config.queue_url.rstrip("/").rsplit("/", 1)[-1]  # the queue's name
        self._dedupe = dedupe
        self._canary = canary
        self._config = config
        self._clock = clock
        self._invoker = Invoker(handler, metrics, stopping)
        self._stopping = stopping
        self._buffer = buffer
        self._slots = slots
        self._acker = acker
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._workers: list[asyncio.Task[None]] = []
        self._policy = RetryPolicy(
            config.retry_base_seconds,
            config.retry_max_seconds,
            config.max_receive_count,
            dead_letter_queue=dead_letters is not None,
        )

    def start(self, group: asyncio.TaskGroup) -> None:
        """Run ``concurrency`` workers in ``group``."""
        self._workers = [group.create_task(self._worker()) for _ in range(self._config.concurrency)]

    async def drain(self, grace: float) -> None:
        """Release what never started; let running handlers finish within ``grace``; then cancel
        the rest (each cancelled handler's message is released, see :meth:`_process`)."""
        await self.release_buffered()
        try:
            async with asyncio.timeout(grace):
                await self._slots.wait_empty()
        except TimeoutError:
            log.warning("shutdown_grace_expired", running=self._slots.used)
        self._invoker.cancelling = True
        for task in self._workers:
            task.cancel()
        # A handler may swallow the cancellation (or turn it into another error) and its worker
        # settle the message; such a worker then ends on its own. One that started waiting on
        # something else gets a second cancel.
        _, stragglers = await asyncio.wait(self._workers, timeout=CANCEL_WAIT_SECONDS)
        for task in stragglers:
            log.warning("worker_ignored_cancel")
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def release_buffered(self) -> None:
        """Release, at visibility 0, every message received and not started (on a FIFO queue, of
        the groups with nothing running: the others follow their running message, see :meth:`_after`)."""
        leases = self._buffer.drain()
        for lease in leases:
            self.release(lease)
        # A stop has begun: the held deletes go now, and those of messages done from now on at once
        # (see _delete_completed), so that a hard stop or a kill -9 during the grace re-runs none.
        self._acker.send_all_held()
        await self._slots.give_back(len(leases))

    async def _worker(self) -> None:
        """Take buffered messages until cancelled (one at a time, or up to 10 for a batch handler);
        once stopping, start none."""
        most = MAX_BATCH_ENTRIES if self._invoker.batch else 1
        while not self._invoker.cancelling:
            leases = await self._buffer.take(most)
            stopped: Stopped = {}
            try:
                if self._stopping.is_set():
                    for lease in leases:
                        self.release(lease)
                else:
                    await self._process(leases, stopped)
            except Exception:
                log.exception("dispatch_failed")
                self._forget_held(leases, stopped)
            finally:
                await self._after(leases, stopped)

    async def _after(self, leases: list[Lease], stopped: Stopped) -> None:
        """Free the slots and, on a FIFO queue, the groups. The messages waiting behind a message
        that goes back to the queue are released with the same delay, so the group comes back whole
        and in order (releasing them at once would let a server that does not lock the group, such as
        LocalStack, hand them out before the failed one). On a stop, nothing waits behind."""
        if self._stopping.is_set():
            for group in _groups(leases):
                stopped.setdefault(group, 0)
        behind = self._buffer.done(leases, set(stopped))
        for lease in behind:
            self.release(lease, stopped[lease.group_id or ""])
        for group in _groups(leases):
            if not self._buffer.waiting(group):
                self._acker.send_held(group)  # the group's run here is over: its done messages go
        await self._slots.give_back(len(leases) + len(behind))

    def release(self, lease: Lease, seconds: int = 0) -> None:
        """Give back a message not handled (never started, or behind a failure of its FIFO group):
        at visibility 0 it is delivered again at once, to this or another processor, without waiting
        out the timeout (SQS has counted the receive all the same)."""
        lease.settle()
        self._metrics.released.inc()
        self._back_to_queue(lease, seconds)

    def _release_completed(self, lease: Lease, seconds: int) -> None:
        """A message the handler reported fine that goes back behind a failure of its FIFO group,
        to keep the order: its key is recorded as completed all the same (its claim is not released),
        so when the group comes back the message is skipped as a duplicate, not run again."""
        lease.settle()
        self._metrics.released.inc()
        self._record_completion(lease, then=lambda: self._acker.make_visible(lease, seconds), success=False)

    def _back_to_queue(self, lease: Lease, seconds: int) -> None:
        """Visible again in ``seconds``. Its idempotency claim (if any) is released first, so that
        the next delivery finds it free (and not still held by the copy that failed)."""
        if self._dedupe is None:
            self._acker.make_visible(lease, seconds)
        else:
            self._dedupe.failed(lease, then=lambda: self._acker.make_visible(lease, seconds))

    def _forget_held(self, leases: list[Lease], stopped: Stopped) -> None:
        """After an error of ours: stop holding what has no outcome yet; it comes back when its
        visibility ends (never deleted unprocessed, never lost)."""
        for lease in leases:
            if lease.held_by_handler:
                lease.settle()
                if self._dedupe is not None:
                    self._dedupe.failed(lease)
                self._acker.forget(lease)
                _stop(stopped, lease, self._comes_back_in(lease))

    def _comes_back_in(self, lease: Lease) -> int:
        """Seconds until a message left to its visibility timeout is visible again (and a second)."""
        return max(0, math.ceil(lease.visible_until - self._clock())) + 1

    async def _process(self, leases: list[Lease], stopped: Stopped) -> None:
        """Run the handler on the messages their idempotency claim admits, and settle each message,
        noting the FIFO groups it stops in ``stopped``."""
        for lease in leases:
            lease.start()
        leases = await self._answer_canaries(leases)
        admitted = self._admitted(leases)
        runnable = [lease for lease in leases if admitted.runs(lease)]
        with self._tracing.process(self._destination, [_carried(lease) for lease in leases]) as span:
            try:
                errors = await self._invoker.errors(runnable) if runnable else {}
            except asyncio.CancelledError:
                self._unfinished(leases, stopped)
                raise
            await self._settle_all(leases, errors, stopped, admitted, span)

    async def _answer_canaries(self, leases: list[Lease]) -> list[Lease]:
        """Canaries are answered and settled here, never seen by the handler; returns the others."""
        if self._canary is None:
            return leases
        rest = await self._canary.take(leases, self._acker)
        if self._dedupe is not None:
            for lease in leases:
                if lease not in rest:
                    self._dedupe.failed(lease)  # not a handler completion: let its claim go
        return rest

    def _admitted(self, leases: list[Lease]) -> Admission:
        """The outcomes decided before the handler (duplicates), and on a FIFO queue the messages
        behind a deferred one of their group (they must not run before it; those before it do)."""
        admission = Admission()
        deferred: set[str] = set()  # FIFO groups with a deferred message so far, in batch order
        for lease in leases:
            group = lease.group_id or ""
            if self._config.fifo and group in deferred:
                admission.behind.add(id(lease))
                continue
            outcome = before_handler(lease.claim, lease.receive_count, self._policy, self._config.visibility_timeout)
            if outcome is not None:
                admission.decided[id(lease)] = outcome
                if self._config.fifo and isinstance(outcome, Defer):
                    deferred.add(group)
        return admission

    def _unfinished(self, leases: list[Lease], stopped: Stopped) -> None:
        """The worker was cancelled (shutdown): a message whose handler stopped is released at once;
        one whose thread still runs is left to its visibility timeout, and on a FIFO queue the others
        of its group in this batch come back with it (not before it)."""
        for lease in leases:
            if lease.stage is Stage.ABANDONED:
                log.warning("handler_abandoned", message_id=lease.message_id)
                self._acker.forget(lease)
                _stop(stopped, lease, self._comes_back_in(lease))
        for lease in leases:
            if lease.stage is Stage.RUNNING:
                seconds = stopped.get(lease.group_id or "", 0) if self._config.fifo else 0
                self.release(lease, seconds)
                _stop(stopped, lease, seconds)

    async def _settle_all(
        self,
        leases: list[Lease],
        errors: Mapping[str, BaseException],
        stopped: Stopped,
        admitted: Admission,
        span: Recorder,
    ) -> None:
        """Settle each message. On a standard queue the deletes and retries go first and the
        dead-letter copies (an SQS call each, awaited) last, so a stop during a copy never hands back
        messages whose handler succeeded. On a FIFO queue, in order: a message that goes back to the
        queue stops its group, and the later messages of that group in this batch are released with
        it, not settled, so that the group is delivered again from the failed one (what Lambda does
        with FIFO batches). A message that did not run (behind a deferred one) is never decided from
        the handler's errors: it is released with its group."""
        decided = [(lease, self._outcome(lease, errors, admitted)) for lease in leases]
        if not self._config.fifo:
            decided.sort(key=lambda pair: isinstance(pair[1], DeadLetter))  # stable: otherwise in order
        for lease, outcome in decided:
            group = lease.group_id or ""
            with lease.log_context():
                if outcome is None or (self._config.fifo and group in stopped):
                    log.info("released_behind_failure", group_id=group)
                    _stop(stopped, lease, 0)  # (a deferred message before it has stopped the group)
                    if isinstance(outcome, Ack):
                        self._release_completed(lease, stopped[group])
                    else:
                        self.release(lease, stopped[group])
                    span.outcome(lease.message_id, "released")
                    continue
                if (seconds := await self._settle(lease, outcome)) is not None:
                    stopped[group] = seconds
                span.outcome(lease.message_id, OUTCOME_NAMES[type(outcome)])

    def _outcome(self, lease: Lease, errors: Mapping[str, BaseException], admitted: Admission) -> Outcome | None:
        """Decided before the handler, or from its errors; None for a message that did not run."""
        if id(lease) in admitted.behind:
            return None
        return admitted.decided.get(id(lease)) or self._decide(lease, errors)

    def _decide(self, lease: Lease, errors: Mapping[str, BaseException]) -> Outcome:
        return decide(errors.get(lease.message_id), lease.receive_count, self._policy)

    async def _settle(self, lease: Lease, outcome: Outcome) -> int | None:
        """Act on one message's outcome; returns the seconds until it is visible again when it goes
        back to the queue, None when it is done (deleted, dead-lettered)."""
        match outcome:
            case Ack():
                lease.settle()
                self._record_completion(lease, then=lambda: self._delete_completed(lease), success=True)
                return None
            case RetryAfter():
                return self._retry(lease, outcome)
            case DeadLetter():
                return await self._dead_letter(lease, outcome)
            case Duplicate():
                lease.settle()
                self._metrics.duplicates_skipped.inc()
                log.info("duplicate_skipped", key=lease.dedupe_key)
                self._acker.delete(lease)
                return None
            case Defer(seconds=seconds):
                lease.settle()
                self._metrics.duplicates_deferred.inc()
                log.info("duplicate_deferred", key=lease.dedupe_key, retry_in=seconds)
                self._back_to_queue(lease, seconds)  # (a claim it holds, if any, is released first)
                return seconds

    def _record_completion(self, lease: Lease, then: Callable[[], None], *, success: bool) -> None:
        """The handler succeeded: with a store, its completion is recorded, then ``then``; counted
        as a success (``success``), unless this lease's claim was lost to another process while the
        handler ran: the handler has then run twice for the key, and that is counted and logged."""
        if self._dedupe is None:
            if success:
                self._metrics.succeeded.inc()
            then()
            return
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

        self._dedupe.completed(lease, then=recorded, duplicate=on_duplicate)

    def _delete_completed(self, lease: Lease) -> None:
        """On a FIFO queue, a message with later ones of its group still waiting here is deleted
        with the group's last (see :meth:`Acker.delete_later`)."""
        group = lease.group_id or ""
        if self._config.fifo and self._buffer.waiting(group) and not self._stopping.is_set():
            self._acker.delete_later(lease)
        else:
            self._acker.delete(lease)
            self._acker.send_held(group)

    def _retry(self, lease: Lease, outcome: RetryAfter) -> int:
        lease.settle()
        self._metrics.retried.inc()
        if outcome.parked:  # a permanent error with no DLQ to take it, or a copy that can never fit
            log.error("message_parked", error=describe(outcome.error), retry_in=outcome.seconds)
        else:
            log.warning("handler_failed_retrying", error=describe(outcome.error), retry_in=outcome.seconds,
                        receive_count=lease.receive_count)  # fmt: skip
        self._back_to_queue(lease, outcome.seconds)
        return outcome.seconds

    async def _dead_letter(self, lease: Lease, outcome: DeadLetter) -> int | None:
        """Copy to the DLQ, then delete. The lease stays held while the copy is sent (the heartbeat
        keeps it invisible). If the copy fails, nothing is deleted: the message comes back after a
        backoff and the redrive policy still stands behind it."""
        if self._dead_letters is None:  # decide() never asks for it without one: a bug of ours
            raise RuntimeError("a dead-letter decision on a queue without a dead-letter queue")
        reason = "exhausted" if outcome.exhausted else "rejected"
        try:
            dlq_id = await self._dead_letters.send(lease, outcome)
        except asyncio.CancelledError:
            self.release(lease)  # the stop came during the copy: it comes back (the copy may be there)
            raise
        except COPY_ERRORS as exc:  # classified; the message is retried instead
            too_large = isinstance(exc, DeadLetterTooLargeError)
            code = "TooLarge" if too_large else classify(exc).code
            log.error("dead_letter_failed", code=code, error=describe(exc, str)[:300])
            return self._retry(lease, self._policy.after_failed_copy(outcome.error, too_large=too_large))
        lease.settle()
        self._metrics.dead_lettered.labels(reason).inc()
        log.warning(
            "dead_lettered",
            reason=reason,
            error_type=outcome.error_type,
            error=outcome.error_message,
            dlq_message_id=dlq_id,
            receive_count=lease.receive_count,
        )
        if self._dedupe is None:
            self._acker.delete(lease)
        else:  # dead-lettered is not completed: a copy redriven later may run
            self._dedupe.failed(lease, then=lambda: self._acker.delete(lease))
        return None


OUTCOME_NAMES: dict[type, str] = {
    Ack: "ack", RetryAfter: "retry", DeadLetter: "dead_letter", Duplicate: "duplicate", Defer: "defer",
}  # fmt: skip


def _carried(lease: Lease) -> Carried:
    traceparent = lease.attributes.get(TRACEPARENT, {}).get("StringValue")
    return Carried(lease.message_id, str(traceparent) if traceparent else None)


def _groups(leases: list[Lease]) -> set[str]:
    return {lease.group_id or "" for lease in leases}


def _stop(stopped: Stopped, lease: Lease, seconds: int) -> None:
    """Note that ``lease``'s group waits ``seconds`` for it (the longest wait of the group wins)."""
    group = lease.group_id or ""
    stopped[group] = max(stopped.get(group, 0), seconds)
