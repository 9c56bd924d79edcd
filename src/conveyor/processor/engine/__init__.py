"""The consumer engine: pollers, workers, acker and heartbeat in one task group, and the graceful
shutdown that loses nothing.

One stop signal (:attr:`Engine.stopping`) is read by the pollers, the workers and readiness. The
shutdown, in three steps: (1) stop receiving (:meth:`Poller.stop`: an open long poll is cancelled,
not waited out; a receive that is answering gets up to a second, so that messages SQS already handed
out are not lost to the visibility timeout); (2) release every message received but not started at
visibility 0, so it is delivered again now rather than after the timeout; (3) let running handlers
finish within the grace period, then cancel what remains and release those messages too
(:meth:`Dispatcher.drain`). Every message's end goes through the one :class:`Settlement`; its pending
deletes are flushed before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from conveyor.payloads.store import PayloadStore
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine.buffer import AnyOrder, Buffer, ByGroup
from conveyor.processor.engine.canary_reply import CanaryResponder
from conveyor.processor.engine.dead_letter import DeadLetterQueue
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.engine.dispatcher import Dispatcher
from conveyor.processor.engine.flow.gate import Flow
from conveyor.processor.engine.flow.rate import Bucket, LocalBucket
from conveyor.processor.engine.health import Health
from conveyor.processor.engine.heartbeat import Heartbeat
from conveyor.processor.engine.lease import InFlight, Lease
from conveyor.processor.engine.pacing import ReceivePacing
from conveyor.processor.engine.poller import Poller
from conveyor.processor.engine.settle import Settlement
from conveyor.processor.engine.slots import Slots
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.user_code import BatchHandler, Handler
from conveyor.sqs.errors import SqsError
from conveyor.tracing import NO_TRACING, NoTracing, Tracing

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.processor")


class Engine:
    def __init__(
        self,
        client: SQSClient,
        config: EngineConfig,
        handler: Handler | BatchHandler,
        *,
        metrics: ProcessorMetrics | None = None,
        dedupe: Dedupe | None = None,
        canary: CanaryResponder | None = None,
        tracing: NoTracing | Tracing = NO_TRACING,
        bucket: Bucket | None = None,
        payloads: PayloadStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.config = config
        self.handler = handler
        self.dedupe = dedupe  # with an idempotency store: a handler completion happens once per key
        self.canary = canary  # with CONVEYOR_CANARY_SECRET: canaries are answered, never handled
        self.tracing = tracing  # OpenTelemetry, when the OTEL_* variables turn it on
        self.payloads = payloads  # S3: payloads of messages that carry a pointer are fetched from it
        self.metrics = metrics or ProcessorMetrics()
        self.clock = clock
        self._sleep = sleep  # the pollers' backoff after errors (tests record it)
        self._rand = rand
        self.stopping = asyncio.Event()  # the one stop signal
        self.health = Health(self.stopping, clock)
        self.inflight = InFlight(self.metrics.in_flight.set)
        self.slots = Slots(config.capacity)
        self.buffer: Buffer = ByGroup() if config.fifo else AnyOrder()
        self.fatal: SqsError | None = None
        self.pacing = ReceivePacing(config.batch_window, long_polls=config.wait_time_seconds > 0, clock=clock)
        rate = config.flow.rate_per_second
        self.flow = Flow(
            config.flow, config.concurrency, metrics=self.metrics, health=self.health, stopping=self.stopping,
            bucket=bucket or (LocalBucket(rate, clock) if rate else None), resize=self._resize, clock=clock,
        )  # fmt: skip

    async def _resize(self, concurrency: int) -> None:
        """Hold what the handlers allowed to run can start soon: the limit plus the prefetch."""
        await self.slots.resize(self.config.capacity_at(concurrency))

    def stop(self) -> None:
        """Begin the graceful shutdown (idempotent, safe from a signal handler)."""
        self.stopping.set()

    async def run(self) -> None:
        """Process messages until :meth:`stop`; raises the fatal SQS error if polling hit one."""
        config = self.config
        async with Settlement(
            self.client, config, inflight=self.inflight, slots=self.slots, metrics=self.metrics,
            dedupe=self.dedupe, hold_delete=self._hold_delete, payloads=self.payloads, clock=self.clock,
        ) as settlement:  # fmt: skip
            dispatcher = Dispatcher(
                config, self.handler, stopping=self.stopping, buffer=self.buffer, settlement=settlement,
                dead_letters=self._dead_letter_queue(), metrics=self.metrics, canary=self.canary,
                tracing=self.tracing, flow=self.flow, clock=self.clock,
            )  # fmt: skip
            heartbeat = Heartbeat(
                self.inflight, settlement, self.metrics, config.visibility_timeout, clock=self.clock,
                on_beat=self.dedupe.renew if self.dedupe else None,
            )  # fmt: skip
            pollers = [self._poller(settlement) for _ in range(config.pollers)]
            async with asyncio.TaskGroup() as group:
                beat = group.create_task(heartbeat.run())
                group.create_task(self.flow.tick())
                dispatcher.start(group)
                for poller in pollers:
                    poller.start(group, self._fatal)
                log.info("processor_started", queue=config.queue_url, concurrency=config.concurrency)
                await self.stopping.wait()
                await self._shutdown(pollers, dispatcher)
                beat.cancel()
        if self.fatal is not None:
            raise self.fatal

    def _hold_delete(self, lease: Lease) -> bool:
        """FIFO: a done message with later ones of its group still waiting here is deleted with the
        group's last (see :meth:`Acker.delete_later`); once stopping, at once."""
        return self.config.fifo and self.buffer.waiting(lease.group) and not self.stopping.is_set()

    async def _shutdown(self, pollers: list[Poller], dispatcher: Dispatcher) -> None:
        log.info("processor_stopping", in_flight=len(self.inflight))
        await dispatcher.release_buffered()  # visible again now, not after the poll drain
        await asyncio.gather(*(poller.stop(self.config.poll_drain_seconds) for poller in pollers))
        await dispatcher.drain(self.config.shutdown_grace)
        log.info("processor_stopped")

    def _fatal(self, exc: SqsError) -> None:
        log.error("queue_unusable", code=exc.failure.code, error=exc.failure.message)
        self.fatal = exc
        self.stop()

    def _dead_letter_queue(self) -> DeadLetterQueue | None:
        config = self.config
        if config.dlq_url is None:
            return None
        return DeadLetterQueue(
            self.client, config.dlq_url, config.queue_url,
            fifo=config.fifo, max_bytes=config.dlq_max_message_bytes,
        )  # fmt: skip

    def _poller(self, settlement: Settlement) -> Poller:
        return Poller(
            self.client, self.config.queue_url, stopping=self.stopping,
            settlement=settlement, buffer=self.buffer, health=self.health,
            metrics=self.metrics, wait_time_seconds=self.config.wait_time_seconds,
            visibility_timeout=self.config.visibility_timeout,
            error_backoff_max=self.config.poll_error_backoff_max, fifo=self.config.fifo, clock=self.clock,
            sleep=self._sleep, rand=self._rand, admit=self.dedupe.admit if self.dedupe else None,
            flow=self.flow, pacing=self.pacing,
        )  # fmt: skip
