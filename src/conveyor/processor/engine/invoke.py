"""Calling the user's handler: whatever it does becomes an error per message (or none), never the end
of a worker.

Every exception counts, ``SystemExit`` and ``KeyboardInterrupt`` raised by handler code too (a
library calling ``sys.exit``): signals are the runner's business, not the handler's. A
``CancelledError`` is the worker's own cancellation only when the dispatcher is cancelling its
workers (shutdown) or someone cancelled this task while the handler ran during a stop; otherwise the
handler raised it itself (awaiting a task someone else cancelled) and it is a failure like any other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog

from conveyor.processor.engine.lease import Lease
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.user_code import BatchHandler, Handler, StillRunningError

log = structlog.get_logger("conveyor.processor")
HANDLER_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit, KeyboardInterrupt)


class Invoker:
    def __init__(
        self,
        handler: Handler | BatchHandler,
        metrics: ProcessorMetrics,
        stopping: asyncio.Event,
        abandon: Callable[[Lease], None],
        fetch: Callable[[Sequence[Lease]], Awaitable[dict[str, BaseException]]] | None = None,
    ) -> None:
        self.handler = handler
        self._fetch = fetch  # the settlement's: payloads stored in S3 are fetched before the handler
        self._abandon = abandon  # the settlement's: a lease's stage changes there only
        self._metrics = metrics
        self._stopping = stopping
        self.cancelling = False  # set by the dispatcher just before it cancels its workers
        self.calls = 0  # handler calls under way (a batch is one)

    @property
    def batch(self) -> bool:
        return isinstance(self.handler, BatchHandler)

    async def errors(self, leases: list[Lease]) -> Mapping[str, BaseException]:
        """Run the handler on ``leases``; each message's error, by message id (absent: success). A
        message whose payload could not be fetched from S3 has that error, and the handler does not
        see it."""
        unfetched = await self._fetch(leases) if self._fetch is not None else {}
        if not unfetched:
            return await self._handler_errors(leases)
        fetched = [lease for lease in leases if lease.message_id not in unfetched]
        return {**unfetched, **(await self._handler_errors(fetched) if fetched else {})}

    async def _handler_errors(self, leases: list[Lease]) -> Mapping[str, BaseException]:
        started = time.perf_counter()
        self._metrics.running.inc(len(leases))
        self.calls += 1
        cancels_before = _cancelling()
        try:
            return await self._call(leases)
        except asyncio.CancelledError as exc:
            error = self._cancelled(leases, exc, cancels_before)
            return {lease.message_id: error for lease in leases}
        except HANDLER_ERRORS as exc:
            if not isinstance(exc, Exception):
                log.error("handler_raised_exit", error=type(exc).__name__)
            return {lease.message_id: exc for lease in leases}
        finally:
            self.calls -= 1
            self._metrics.running.dec(len(leases))
            self._metrics.handler_seconds.observe(time.perf_counter() - started)

    async def _call(self, leases: list[Lease]) -> Mapping[str, BaseException]:
        if isinstance(self.handler, BatchHandler):
            failures = await self.handler.call([lease.message() for lease in leases])
            return failures_of(failures, [lease.message_id for lease in leases])
        [lease] = leases
        with lease.log_context():  # the handler's own log lines carry the ids too
            await self.handler(lease.message())
        return {}

    def _cancelled(self, leases: list[Lease], exc: asyncio.CancelledError, cancels_before: int) -> BaseException:
        """Let the worker's own cancellation through, marking the messages whose thread still runs so
        they are never released; any other ``CancelledError`` is the handler's failure."""
        if isinstance(exc, StillRunningError):
            for lease in leases:
                self._abandon(lease)
        cancelled_meanwhile = _cancelling() > cancels_before
        if self.cancelling or (cancelled_meanwhile and self._stopping.is_set()):
            raise exc
        _forget_cancel_requests(cancels_before)  # left by the handler: they must not doom later calls
        return exc


def _cancelling() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _forget_cancel_requests(down_to: int) -> None:
    task = asyncio.current_task()
    while task is not None and task.cancelling() > down_to:
        task.uncancel()


def failures_of(failures: object, ids: Sequence[str]) -> dict[str, BaseException]:
    """Check what a batch handler returned; a malformed answer fails the whole batch (retried).

    Naming an id that is not a message id of this batch (the user's own ids, say) is malformed:
    taking it at its word would delete as succeeded the messages it meant to fail."""
    if failures is None:
        return {}
    if not isinstance(failures, Mapping) or not all(isinstance(e, BaseException) for e in failures.values()):
        return _malformed(ids, f"a mapping of message id to exception or None, not {type(failures).__name__}")
    known = set(ids)
    unknown = [str(key) for key in failures if key not in known]
    if unknown:
        return _malformed(ids, f"ids of this batch's messages; these are not: {', '.join(unknown[:10])}")
    return dict(failures)


def _malformed(ids: Sequence[str], expected: str) -> dict[str, BaseException]:
    error = TypeError(f"a batch handler must return {expected}")
    log.error("batch_handler_bad_result", error=str(error)[:300])
    return dict.fromkeys(ids, error)
