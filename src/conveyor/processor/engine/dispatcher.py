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
import time
from collections.abc import Callable, Mapping

import structlog

from conveyor.metadata import TRACEPARENT
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine.batch import Batch, GroupBatch
from conveyor.processor.engine.buffer import Buffer
from conveyor.processor.engine.canary_reply import CanaryResponder
from conveyor.processor.engine.dead_letter import DeadLetterQueue, DeadLetterTooLargeError
from conveyor.processor.engine.flow.gate import Flow
from conveyor.processor.engine.invoke import Invoker
from conveyor.processor.engine.lease import Lease, Stage
from conveyor.processor.engine.outcome import (
    OUTCOME_NAMES,
    Ack,
    DeadLetter,
    Defer,
    Duplicate,
    Outcome,
    RetryAfter,
    RetryPolicy,
    comes_back_in,
    decided_from,
    describe,
    released_behind,
    settle_order,
    while_breaker_open,
)
from conveyor.processor.engine.settle import Settlement
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.user_code import BatchHandler, Handler
from conveyor.sqs.errors import SQS_ERRORS, classify
from conveyor.sqs.limits import MAX_BATCH_ENTRIES
from conveyor.tracing import NO_TRACING, Carried, NoTracing, Recorder, Tracing

log = structlog.get_logger("conveyor.processor")
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
        settlement: Settlement,
        dead_letters: DeadLetterQueue | None,
        metrics: ProcessorMetrics,
        flow: Flow,
        canary: CanaryResponder | None = None,
        tracing: NoTracing | Tracing = NO_TRACING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flow = flow  # adaptive concurrency and the breaker: told every handler's result
        self._tracing = tracing
        self._destination = config.queue_url.rstrip("/").rsplit("/", 1)[-1]  # the queue's name
        self._canary = canary
        self._config = config
        self._clock = clock
        self._settlement = settlement
        self._invoker = Invoker(handler, metrics, stopping, abandon=settlement.abandon, fetch=settlement.fetch_payloads)
        self._stopping = stopping
        self._buffer = buffer
        self._batch: type[Batch] = GroupBatch if config.fifo else Batch
        self._dead_letters = dead_letters
        self._workers: list[asyncio.Task[None]] = []
        self._policy = RetryPolicy.of(config)  # (dead_letters is there exactly when config names a DLQ)

    def start(self, group: asyncio.TaskGroup) -> None:
        """Run ``concurrency`` workers in ``group``."""
        self._workers = [group.create_task(self._worker()) for _ in range(self._config.concurrency)]

    async def drain(self, grace: float) -> None:
        """Release what never started; let running handlers finish within ``grace``; then cancel
        the rest (each cancelled handler's message is released, see :meth:`_process`)."""
        await self.release_buffered()
        try:
            async with asyncio.timeout(grace):
                await self._settlement.all_given_back()
        except TimeoutError:
            log.warning("shutdown_grace_expired", running=self._settlement.slots_used)
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
        await self.release_waiting()
        # A stop has begun: the held deletes go now, and those of messages done from now on at once
        # (see Engine's hold_delete), so that a hard stop or a kill -9 during the grace re-runs none.
        self._settlement.send_all_held()

    async def release_waiting(self) -> None:
        """Release, at visibility 0, the messages received and not started (a stop, an open breaker)."""
        leases = self._buffer.drain()
        for lease in leases:
            self._settlement.release(lease)
        await self._settlement.give_back(len(leases))

    async def _worker(self) -> None:
        """Take buffered messages until cancelled (one, or up to 10 for a batch handler); stopping: start none."""
        most = MAX_BATCH_ENTRIES if self._invoker.batch else 1
        while not self._invoker.cancelling:
            await self._take_and_run(most)

    async def _take_and_run(self, most: int) -> None:
        batch = self._batch(await self._buffer.take(most))
        run = permitted = False
        try:
            await self._flow.permit()  # fewer run at once while the downstream pushes back
            permitted = True
            if run := await self._flow.may_start():
                await self._process(batch)
        except Exception:
            log.exception("dispatch_failed")
            self._forget_held(batch)
        finally:
            if not run:  # stopping, or the breaker opened since the receive: back to the queue, unstarted
                wait = 0 if self._stopping.is_set() else self._flow.retry_floor or 0  # (out of the probes' way)
                for lease in batch.taken:
                    self._settlement.release(lease, wait)
                    batch.stop(lease, wait)  # (FIFO: the group's later messages follow it, in order)
            await self._after(batch)
            if permitted:
                await self._flow.give_back()

    async def _after(self, batch: Batch) -> None:
        """Free the slots and, on a FIFO queue, the groups. The messages waiting behind a message
        that goes back to the queue are released with the same delay, so the group comes back whole
        and in order (releasing them at once would let a server that does not lock the group, such as
        LocalStack, hand them out before the failed one). On a stop, nothing waits behind."""
        if self._stopping.is_set():
            batch.stop_all()
        behind = self._buffer.done(batch.taken, batch.stopped_groups)
        for lease in behind:
            self._settlement.release(lease, batch.wait_of(lease))
        for group in batch.groups:
            if not self._buffer.waiting(group):
                self._settlement.send_held(group)  # the group's run here is over: its done messages go
        await self._settlement.give_back(len(batch.taken) + len(behind))

    def _forget_held(self, batch: Batch) -> None:
        """After an error of ours: stop holding what has no outcome yet; back when its visibility ends."""
        for lease in batch.taken:
            if lease.held_by_handler:
                self._settlement.forget(lease)
                batch.stop(lease, comes_back_in(lease.visible_until, self._clock()))

    async def _process(self, batch: Batch) -> None:
        """Run the handler on what the idempotency claims admit; settle each (noting FIFO groups stopped)."""
        for lease in batch.taken:
            self._settlement.start(lease)
        leases = await self._canary.take(batch.taken, self._settlement) if self._canary else batch.taken
        runnable = batch.admit(leases, self._policy, self._config.visibility_timeout)
        with self._tracing.process(self._destination, [_carried(lease) for lease in leases]) as span:
            try:
                errors = await self._run(runnable)
            except asyncio.CancelledError:
                self._unfinished(batch)
                raise
            await self._settle_all(batch, errors, span)

    async def _run(self, runnable: list[Lease]) -> Mapping[str, BaseException]:
        """The handler's errors; flow control hears of them first, so that a failure that opens the
        breaker is settled as one (see :func:`while_breaker_open`), and the messages waiting go back."""
        if not runnable:
            return {}
        started = self._clock()
        errors = await self._invoker.errors(runnable)
        calls = self._invoker.calls + 1  # under way when this one ended, itself included
        if await self._flow.observe(started, [errors.get(lease.message_id) for lease in runnable], calls):
            await self.release_waiting()  # the breaker opened
        return errors

    def _unfinished(self, batch: Batch) -> None:
        """The worker was cancelled (shutdown): a message whose handler stopped is released at once;
        one whose thread still runs is left to its visibility timeout, and on a FIFO queue the others
        of its group in this batch come back with it (not before it)."""
        for lease in batch.leases:
            if lease.stage is Stage.ABANDONED:
                self._settlement.leave_abandoned(lease)
                batch.stop(lease, comes_back_in(lease.visible_until, self._clock()))
        for lease in batch.leases:
            if lease.stage is Stage.RUNNING:
                seconds = batch.wait_of(lease)
                self._settlement.release(lease, seconds)
                batch.stop(lease, seconds)

    async def _settle_all(self, batch: Batch, errors: Mapping[str, BaseException], span: Recorder) -> None:
        """Settle each message, in the order :func:`settle_order` decides. On a FIFO queue a message
        that goes back to the queue stops its group, and the later messages of that group in this
        batch are released with it, not settled (see :func:`released_behind`)."""
        outcomes = [self._outcome(batch, position, errors) for position in range(len(batch.leases))]
        for position in settle_order(outcomes, in_order=batch.in_order):
            lease, outcome = batch.leases[position], outcomes[position]
            with lease.log_context():
                if released_behind(outcome, group_stopped=batch.stopped(lease)):
                    log.info("released_behind_failure", group_id=lease.group)
                    batch.stop(lease, 0)  # (a deferred message before it has stopped the group)
                    if isinstance(outcome, Ack):
                        self._settlement.release_completed(lease, batch.wait_of(lease))
                    else:
                        self._settlement.release(lease, batch.wait_of(lease))
                    span.outcome(lease.message_id, "released")
                    continue
                assert outcome is not None  # noqa: S101 - released_behind took the messages that did not run
                if (seconds := await self._settle(lease, outcome)) is not None:
                    batch.stop(lease, seconds)
                span.outcome(lease.message_id, OUTCOME_NAMES[type(outcome)])

    def _outcome(self, batch: Batch, position: int, errors: Mapping[str, BaseException]) -> Outcome | None:
        """Decided before the handler, or from its errors; None for a message that did not run."""
        if position in batch.admission.behind:
            return None
        lease = batch.leases[position]
        before = batch.admission.decided[position]
        outcome = before or decided_from(errors.get(lease.message_id), lease.receive_count, self._policy)
        floor = self._flow.retry_floor
        return outcome if floor is None or before else while_breaker_open(outcome, floor)

    async def _settle(self, lease: Lease, outcome: Outcome) -> int | None:
        """Act on one message's outcome; returns the seconds until it is visible again when it goes
        back to the queue, None when it is done (deleted, dead-lettered)."""
        match outcome:
            case Ack():
                self._settlement.ack(lease)
                return None
            case RetryAfter():
                return self._settlement.retry(lease, outcome)
            case DeadLetter():
                return await self._dead_letter(lease, outcome)
            case Duplicate():
                self._settlement.duplicate(lease)
                return None
            case Defer(seconds=seconds):
                self._settlement.defer(lease, seconds)
                return seconds

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
            self._settlement.release(lease)  # the stop came during the copy: it comes back (the copy may be there)
            raise
        except COPY_ERRORS as exc:  # classified; the message is retried instead
            too_large = isinstance(exc, DeadLetterTooLargeError)
            code = "TooLarge" if too_large else classify(exc).code
            log.error("dead_letter_failed", code=code, error=describe(exc, str)[:300])
            return self._settlement.retry(lease, self._policy.after_failed_copy(outcome.error, too_large=too_large))
        self._settlement.dead_lettered(lease, reason, outcome.error)
        log.warning(
            "dead_lettered",
            reason=reason,
            error_type=outcome.error_type,
            error=outcome.error_message,
            dlq_message_id=dlq_id,
            receive_count=lease.receive_count,
        )
        return None


def _carried(lease: Lease) -> Carried:
    traceparent = lease.attributes.get(TRACEPARENT, {}).get("StringValue")
    return Carried(lease.message_id, str(traceparent) if traceparent else None)
