"""One visibility loop for every message in flight.

Each tick, every lease whose visibility ends within half a timeout is extended by a full timeout,
through the settlement's coalescing acker (ChangeMessageVisibilityBatch): a slow handler is never delivered
twice, at about one request per ten messages per extension. Extensions stop at SQS's cap of 12 hours
since the receive. A lease has one extension under way at a time: while SQS throttles, the heartbeat
does not pile up more, and a failed one is sent again on a later tick. An extension that gets no
answer (a connection that hangs until botocore's read timeout) does not hold the others back: once
the message's visibility is within a third of a timeout of its end, another is sent each tick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from conveyor.processor.engine.lease import InFlight, Lease
from conveyor.processor.metrics import ProcessorMetrics

log = structlog.get_logger("conveyor.processor")


class Extender(Protocol):
    """Who sends the extensions (the settlement, through its acker)."""

    def extend(self, lease: Lease, seconds: int, on_ok: Callable[[], None]) -> None: ...


class Heartbeat:
    def __init__(
        self,
        inflight: InFlight,
        extender: Extender,
        metrics: ProcessorMetrics,
        visibility_timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_beat: Callable[[], object] | None = None,
    ) -> None:
        self._on_beat = on_beat  # each tick: the idempotency claims are renewed too
        self._inflight = inflight
        self._extender = extender
        self._metrics = metrics
        self._timeout = visibility_timeout
        self._clock = clock

    @property
    def tick(self) -> float:
        return max(self._timeout / 6, 0.05)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.beat()

    def due(self, now: float) -> list[Lease]:
        """Leases still being worked on whose visibility ends within half a timeout, unless an
        extension is under way and there is still time for its answer."""
        horizon = now + self._timeout / 2
        overdue = now + self._timeout / 3
        return [
            lease
            for lease in self._inflight
            if lease.held_by_handler
            and lease.visible_until <= horizon
            and (not lease.extending or lease.visible_until <= overdue)
        ]

    def extension(self, lease: Lease, now: float) -> int:
        """Seconds to extend by: a full timeout, capped so the total stays under 12 hours."""
        return min(int(self._timeout), lease.visibility_cap(now))

    def beat(self) -> None:
        now = self._clock()
        due = self.due(now)
        if self._on_beat is not None:
            self._on_beat()
        for lease in due:
            seconds = self.extension(lease, now)
            if seconds <= 0:
                continue  # at the 12 h cap: SQS will make it visible again; nothing more to do
            self._extender.extend(lease, seconds, on_ok=self._extended(lease, now, seconds))

    def _extended(self, lease: Lease, sent_at: float, seconds: int) -> Callable[[], None]:
        def done() -> None:
            lease.visible_until = max(lease.visible_until, sent_at + seconds)  # answers may come out of order
            self._metrics.extended.inc()

        return done
