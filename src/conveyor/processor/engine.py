"""The consumer engine: pollers, workers, acker and heartbeat in one task group, and the graceful
shutdown that loses nothing.

Shutdown, in three steps: (1) stop polling at once (an open long poll is cancelled, not waited out;
a receive that is answering gets up to a second, so that messages SQS already handed out are not lost
to the visibility timeout);
(2) release every message received but not started at visibility 0, so it is delivered again now
rather than after the timeout; (3) let running handlers finish within the grace period, then cancel
what remains and release those messages too. Pending deletes are flushed before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from conveyor.canary.reply import CanaryResponder
from conveyor.processor.acker import Acker
from conveyor.processor.config import EngineConfig
from conveyor.processor.dispatcher import Dispatcher
from conveyor.processor.handler import BatchHandler, Handler
from conveyor.processor.health import Health
from conveyor.processor.heartbeat import Heartbeat
from conveyor.processor.lease import InFlight, Lease, Stage
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.poller import Poller
from conveyor.processor.slots import Slots
from conveyor.sqs.errors import SqsError

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
        health: Health | None = None,
        clock: Callable[[], float] = time.monotonic,
        canary: CanaryResponder | None = None,
    ) -> None:
        self.client = client
        self.canary = canary
        self.config = config
        self.handler = handler
        self.metrics = metrics or ProcessorMetrics()
        self.health = health or Health(clock)
        self.clock = clock
        self.inflight = InFlight()
        self.slots = Slots(config.capacity)
        self.buffer: asyncio.Queue[Lease] = asyncio.Queue()
        self.fatal: SqsError | None = None
        self._stop = asyncio.Event()
        self._pollers: list[Poller] = []

    def stop(self) -> None:
        """Begin the graceful shutdown (idempotent, safe from a signal handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Process messages until :meth:`stop`; raises the fatal SQS error if polling hit one."""
        config = self.config
        async with Acker(
            self.client, config.queue_url, self.inflight, self.metrics,
            linger=config.delete_linger, entry_retries=config.entry_retries,
        ) as acker:  # fmt: skip
            dispatcher = Dispatcher(
                self.client, config, self.handler,
                buffer=self.buffer, slots=self.slots, acker=acker, metrics=self.metrics, canary=self.canary,
            )  # fmt: skip
            heartbeat = Heartbeat(self.inflight, acker, self.metrics, config.visibility_timeout, self.clock)
            async with asyncio.TaskGroup() as group:
                beat = group.create_task(heartbeat.run())
                workers = [group.create_task(dispatcher.worker()) for _ in range(config.concurrency)]
                self._pollers = [self._poller() for _ in range(config.pollers)]
                pollers = [group.create_task(self._poll(poller)) for poller in self._pollers]
                log.info("processor_started", queue=config.queue_url, concurrency=config.concurrency)
                await self._stop.wait()
                await self._shutdown(dispatcher, pollers, workers)
                beat.cancel()
        if self.fatal is not None:
            raise self.fatal

    def _poller(self) -> Poller:
        return Poller(
            self.client, self.config.queue_url,
            slots=self.slots, buffer=self.buffer, inflight=self.inflight, health=self.health,
            metrics=self.metrics, wait_time_seconds=self.config.wait_time_seconds,
            visibility_timeout=self.config.visibility_timeout,
            error_backoff_max=self.config.poll_error_backoff_max, clock=self.clock,
        )  # fmt: skip

    async def _poll(self, poller: Poller) -> None:
        try:
            await poller.run()
        except SqsError as exc:
            log.error("queue_unusable", code=exc.failure.code, error=exc.failure.message)
            self.fatal = exc
            self.stop()

    async def _shutdown(
        self, dispatcher: Dispatcher, pollers: list[asyncio.Task[None]], workers: list[asyncio.Task[None]]
    ) -> None:
        self.health.stopping = True
        dispatcher.stopping = True
        log.info("processor_stopping", in_flight=len(self.inflight))
        await self._release_buffered(dispatcher)
        await self._stop_polling(pollers)
        await self._release_buffered(dispatcher)  # what a receive under way brought in meanwhile
        try:
            async with asyncio.timeout(self.config.shutdown_grace):
                await self.slots.wait_empty()
        except TimeoutError:
            log.warning("shutdown_grace_expired", running=self.slots.used)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for lease in self.inflight:
            if lease.stage is Stage.RUNNING:  # cancelled mid-handler: not processed, give it back
                dispatcher.release(lease)
        log.info("processor_stopped")

    async def _stop_polling(self, tasks: list[asyncio.Task[None]]) -> None:
        """Idle pollers stop at once. A receive under way gets a moment to return, because SQS may
        already have handed it messages (cancelled, they would stay invisible for the whole timeout);
        one still open after that is a long poll on an empty queue, and is cancelled."""
        for poller, task in zip(self._pollers, tasks, strict=True):
            poller.stopping = True
            if not poller.receiving:
                task.cancel()
        _, still_open = await asyncio.wait(tasks, timeout=self.config.poll_drain_seconds)
        for task in still_open:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _release_buffered(self, dispatcher: Dispatcher) -> None:
        released = 0
        while not self.buffer.empty():
            dispatcher.release(self.buffer.get_nowait())
            released += 1
        await self.slots.give_back(released)
