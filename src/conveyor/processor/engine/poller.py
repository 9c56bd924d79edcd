"""The receive loop: long polls, 10 at a time, only for slots that are free (back-pressure).

Each poller reserves slots before it asks SQS, so that all pollers together never hold more than
the capacity (concurrency + prefetch). Waiting for a full batch of free slots keeps the cost near
one ReceiveMessage per ten messages. Poll errors back off with jitter and keep going; errors that
cannot heal (queue missing, access denied) stop the engine. With a batch window, a sparse queue's
receives are spaced out (:mod:`.pacing`).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from conveyor.idempotency import Claim, StoreUnavailableError
from conveyor.processor.engine.backoff import poll_backoff
from conveyor.processor.engine.buffer import Buffer
from conveyor.processor.engine.flow.gate import Flow
from conveyor.processor.engine.health import Health
from conveyor.processor.engine.lease import Lease
from conveyor.processor.engine.pacing import ReceivePacing
from conveyor.processor.engine.settle import Settlement
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.sqs.errors import Kind, SqsError, classify
from conveyor.sqs.limits import MAX_BATCH_ENTRIES

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import ReceiveMessageResultTypeDef

log = structlog.get_logger("conveyor.processor")


class Poller:
    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        *,
        stopping: asyncio.Event,
        settlement: Settlement,
        buffer: Buffer,
        health: Health,
        metrics: ProcessorMetrics,
        wait_time_seconds: int,
        visibility_timeout: float,
        error_backoff_max: float,
        fifo: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        flow: Flow,
        pacing: ReceivePacing,
        admit: Callable[[list[Lease]], Awaitable[None]] | None = None,
    ) -> None:
        self._flow = flow  # rate limit, throttle pause, breaker: asked before each receive
        self._pacing = pacing  # shared by the pollers: the batch window's spacing of sparse receives
        self._admit = admit  # with an idempotency store: claim a batch's keys before it is handled
        self._client = client
        self._queue_url = queue_url
        self._stopping = stopping
        self._settlement = settlement
        self._buffer = buffer
        self._health = health
        self._metrics = metrics
        self._wait = wait_time_seconds
        self._visibility = visibility_timeout
        self._backoff_max = error_backoff_max
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._fifo = fifo
        self._attempt: str | None = None  # FIFO: the ReceiveRequestAttemptId of a receive to repeat
        self._receiving = False  # a ReceiveMessage call is under way
        self._admitting = False  # a received batch waits for its idempotency claims
        self._kept = 0  # messages of the current receive held (their slots go with them)
        self._answered = False  # SQS answered the current receive
        self._task: asyncio.Task[None] | None = None

    def start(self, group: asyncio.TaskGroup, on_fatal: Callable[[SqsError], None]) -> None:
        """Poll in ``group`` until stopped; an error that cannot heal goes to ``on_fatal``."""

        async def poll() -> None:
            try:
                await self._run()
            except SqsError as exc:
                on_fatal(exc)

        self._task = group.create_task(poll())

    async def stop(self, drain_seconds: float) -> None:
        """Stop receiving. An idle poller (or one backing off) stops at once. A receive under way
        gets ``drain_seconds`` to return, because SQS may already have handed it messages (cancelled,
        they would stay invisible for the whole timeout); one still open after that is a long poll
        on an empty queue, and is cancelled. A batch waiting for its claims stops waiting and goes to
        the buffer unclaimed, to be released at visibility 0 with the other messages not started."""
        task = self._task
        if task is None:
            return
        if not (self._receiving or self._admitting):
            task.cancel()
        await asyncio.wait([task], timeout=drain_seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            if (delay := self._pacing.turn()) > 0:  # before the slots: none is held idle meanwhile
                await self._pause(delay)
                if self._stopping.is_set():
                    return
            want = min(MAX_BATCH_ENTRIES, self._settlement.capacity)
            await self._settlement.reserve(want)
            self._kept = 0
            try:
                granted = await self._flow.before_receive(want)
                if granted:
                    self._answered = False
                    await self._poll_once(granted, paced_from=self._clock())
                    await self._flow.after_receive(granted, self._kept, answered=self._answered)
            finally:  # (even cancelled: the messages held keep their slots until released)
                await self._settlement.give_back(want - self._kept)

    async def _poll_once(self, want: int, paced_from: float) -> None:
        if self._stopping.is_set():  # slots freed by the shutdown's releases: not for a new receive
            return
        started = self._clock()
        self._receiving = True
        try:
            response = await self._receive(want)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified: fatal ones stop the engine
            await self._failed(exc)
            return
        finally:
            self._receiving = False
        self._health.poll_succeeded()
        self._answered = True
        leases = [Lease.from_sqs(raw, started, self._visibility) for raw in response.get("Messages", [])]
        self._pacing.received(started, len(leases), want)
        self._kept = len(leases)
        for lease in leases:
            self._settlement.received(lease)  # held (and extended by the heartbeat) from now on
        handed: list[Lease] = []
        try:
            if leases and self._admit is not None:
                self._admitting = True
                await self._claim(leases)
            self._admitting = False
            await self._hand_on(leases, paced_from, handed)
        finally:
            # Even when the stop cancelled the wait: received and not started, they are released at
            # visibility 0 from the buffer like the others (unclaimed: handled as in progress
            # elsewhere should anything still take them).
            self._admitting = False
            if self._admit is not None:
                _unadmitted(leases)
            for lease in leases[len(handed) :]:
                self._buffer.put(lease)

    async def _hand_on(self, leases: list[Lease], paced_from: float, handed: list[Lease]) -> None:
        """Into the buffer, with a rate limit one token's time apart (see :attr:`Flow.spacing`);
        ``handed`` says how far it got (a stop may cancel the wait)."""
        if self._admit is not None:
            _unadmitted(leases)  # before any runs: none without its claim
        for lease in leases:
            if (due := paced_from + len(handed) * self._flow.spacing - self._clock()) > 0:
                await self._pause(due)
            self._buffer.put(lease)
            handed.append(lease)

    async def _claim(self, leases: list[Lease]) -> None:
        """Claim the batch's keys. While the store cannot answer, the messages stay held (the
        heartbeat keeps them invisible) and the claim is tried again with backoff, readiness off:
        nothing runs without its claim, and no receive is burnt. A stop ends the wait. Store
        failures are counted as such (:meth:`Health.claim_failed`), not as failed polls."""
        assert self._admit is not None  # noqa: S101 - only called with a store
        while not self._stopping.is_set():
            try:
                await self._admit(leases)
            except StoreUnavailableError as exc:
                self._metrics.claim_failures.labels("store_unavailable").inc()
                delay = poll_backoff(self._health.claim_failed(), self._backoff_max, self._rand)
                error = str(exc.__cause__ or exc)[:200]
                log.warning("idempotency_store_unavailable", error=error, retry_in=round(delay, 2))
                await self._pause(delay)
            except Exception:  # a bug of ours or the store's must not stop the engine
                log.exception("idempotency_admit_failed", messages=len(leases))
                self._metrics.claim_failures.labels("error").inc()
                self._health.claim_failed()  # not ready until a claim works again
                return
            else:
                self._health.claim_succeeded()
                return

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the stop comes first."""
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([sleeping, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()

    async def _receive(self, n: int) -> ReceiveMessageResultTypeDef:
        extra: dict[str, str] = {}
        if self._fifo:
            # A receive whose answer was lost (a network error) is repeated with the same attempt id
            # and SQS hands back the same messages, instead of keeping their groups locked until
            # the visibility timeout ends. A new id only once an answer arrived.
            self._attempt = self._attempt or uuid.uuid4().hex
            extra["ReceiveRequestAttemptId"] = self._attempt
        response = await self._client.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=n,
            WaitTimeSeconds=self._wait,
            VisibilityTimeout=int(self._visibility),
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            **extra,  # type: ignore[arg-type]  # only the FIFO attempt id
        )
        self._attempt = None
        return response

    async def _failed(self, exc: BaseException) -> None:
        failure = classify(exc)
        if failure.kind is Kind.FATAL:
            raise SqsError(failure) from exc
        failures = self._health.poll_failed()
        delay = poll_backoff(failures, self._backoff_max, self._rand)
        log.warning("poll_failed", code=failure.code, error=failure.message, retry_in=round(delay, 2))
        await self._sleep(delay)


def _unadmitted(leases: list[Lease]) -> None:
    """Messages whose claim could not be asked for: none runs without one. Each is handled as in
    progress elsewhere (it comes back after a backoff, and the redrive policy stands behind it)."""
    for lease in leases:
        if lease.claim is None:
            lease.claim = Claim.IN_PROGRESS
