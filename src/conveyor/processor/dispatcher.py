"""Runs the handler on each buffered message, ``concurrency`` at a time, and applies the outcome.

Concurrency is the number of workers, independent of the receive batch size: one slow message
never holds up the others of its batch. A worker frees its slot as soon as the handler returns;
the delete or visibility change is coalesced by the acker and settled without blocking the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import structlog

from conveyor.canary.reply import CanaryResponder
from conveyor.processor.acker import Acker
from conveyor.processor.config import EngineConfig
from conveyor.processor.dead_letter import send_to_dlq
from conveyor.processor.handler import BatchHandler, Handler
from conveyor.processor.lease import Lease, Stage
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.outcome import Ack, DeadLetter, RetryAfter, RetryPolicy, decide
from conveyor.processor.slots import Slots
from conveyor.sqs.errors import classify
from conveyor.sqs.limits import MAX_BATCH_ENTRIES

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.processor")


class Dispatcher:
    def __init__(
        self,
        client: SQSClient,
        config: EngineConfig,
        handler: Handler | BatchHandler,
        *,
        buffer: asyncio.Queue[Lease],
        slots: Slots,
        acker: Acker,
        metrics: ProcessorMetrics,
        canary: CanaryResponder | None = None,
    ) -> None:
        self._client = client
        self._canary = canary
        self._config = config
        self._handler = handler
        self._buffer = buffer
        self._slots = slots
        self._acker = acker
        self._metrics = metrics
        self.stopping = False
        # Without a dead-letter queue nothing is dead-lettered by us: permanent errors back off.
        self._policy = RetryPolicy(
            config.retry_base_seconds,
            config.retry_max_seconds,
            config.max_receive_count if config.dlq_url else None,
        )

    async def worker(self) -> None:
        """Take buffered messages until cancelled (one at a time, or up to 10 for a batch handler);
        once stopping, start none."""
        batch = isinstance(self._handler, BatchHandler)
        while True:
            leases = [await self._buffer.get()]
            while batch and len(leases) < MAX_BATCH_ENTRIES and not self._buffer.empty():
                leases.append(self._buffer.get_nowait())
            try:
                if self.stopping:
                    for lease in leases:
                        self.release(lease)
                else:
                    await self._process(leases)
            finally:
                await self._slots.give_back(len(leases))

    def release(self, lease: Lease) -> None:
        """Visibility 0: delivered again at once, to this or another processor, without waiting
        out the timeout (the receive it cost is not counted as a failure by us)."""
        lease.stage = Stage.SETTLING
        self._metrics.released.inc()
        self._acker.change_visibility(lease, 0, release=True)

    async def _process(self, leases: list[Lease]) -> None:
        if self._canary is not None:  # canaries are answered and settled here: never seen by the handler
            leases = await self._canary.take(leases, self._acker)
            if not leases:
                return
        for lease in leases:
            lease.stage = Stage.RUNNING
        if isinstance(self._handler, BatchHandler):
            errors = await self._run_batch(self._handler, leases)
            for lease in leases:
                with _log_context(lease):
                    await self._settle(lease, errors.get(lease.message_id))
        else:
            [lease] = leases
            with _log_context(lease):  # the handler's own log lines carry the ids too
                await self._settle(lease, await self._run_handler(self._handler, lease))

    async def _settle(self, lease: Lease, error: BaseException | None) -> None:
        """Decide the outcome of one message and act on it."""
        outcome = decide(error, lease.receive_count, self._policy)
        lease.stage = Stage.SETTLING if not isinstance(outcome, DeadLetter) else Stage.RUNNING
        match outcome:
            case Ack():
                self._metrics.succeeded.inc()
                self._acker.delete(lease)
            case RetryAfter(seconds=seconds, error=err):
                self._metrics.retried.inc()
                log.warning("handler_failed_retrying", error=repr(err), retry_in=seconds,
                            receive_count=lease.receive_count)  # fmt: skip
                self._acker.change_visibility(lease, seconds, release=True)
            case DeadLetter() if self._config.dlq_url is None:
                self._no_dlq(lease, outcome)
            case DeadLetter():
                await self._dead_letter(lease, outcome)

    async def _run_handler(self, handler: Handler, lease: Lease) -> BaseException | None:
        started = time.perf_counter()
        self._metrics.running.inc()
        try:
            await handler(lease.message())
        except Exception as exc:  # noqa: BLE001 - every handler error becomes an outcome
            return exc
        finally:
            self._metrics.running.dec()
            self._metrics.handler_seconds.observe(time.perf_counter() - started)
        return None

    async def _run_batch(self, handler: BatchHandler, leases: list[Lease]) -> dict[str, BaseException]:
        """Each message's error: the one the handler reported for it, or the one it raised for all."""
        started = time.perf_counter()
        self._metrics.running.inc(len(leases))
        try:
            failures = await handler.call([lease.message() for lease in leases])
        except Exception as exc:  # noqa: BLE001 - every handler error becomes an outcome
            return {lease.message_id: exc for lease in leases}
        finally:
            self._metrics.running.dec(len(leases))
            self._metrics.handler_seconds.observe(time.perf_counter() - started)
        return _failures_of(failures, leases)

    def _no_dlq(self, lease: Lease, outcome: DeadLetter) -> None:
        """A permanent error on a queue without a DLQ: never delete it, keep it out of the way."""
        log.error("permanent_error_without_dlq", error_type=outcome.error_type, error=outcome.error_message)
        lease.stage = Stage.SETTLING
        self._metrics.retried.inc()
        self._acker.change_visibility(lease, int(self._config.retry_max_seconds), release=True)

    async def _dead_letter(self, lease: Lease, outcome: DeadLetter) -> None:
        """Copy to the DLQ, then delete. If the copy fails, nothing is deleted: the message comes
        back after a backoff and the redrive policy still stands behind it."""
        reason = "exhausted" if outcome.exhausted else "rejected"
        dlq_url = self._config.dlq_url or ""
        try:
            dlq_id = await send_to_dlq(
                self._client,
                dlq_url,
                lease,
                outcome,
                source_queue=self._config.queue_url,
                fifo=self._config.dlq_is_fifo,
                max_bytes=self._config.max_message_bytes,
            )
        except Exception as exc:  # noqa: BLE001 - classified; the message is retried instead
            failure = classify(exc)
            log.error("dead_letter_failed", code=failure.code, error=failure.message)
            lease.stage = Stage.SETTLING
            self._acker.change_visibility(lease, int(self._config.retry_base_seconds), release=True)
            return
        lease.stage = Stage.SETTLING
        self._metrics.dead_lettered.labels(reason).inc()
        log.warning(
            "dead_lettered",
            reason=reason,
            error_type=outcome.error_type,
            error=outcome.error_message,
            dlq_message_id=dlq_id,
            receive_count=lease.receive_count,
        )
        self._acker.delete(lease)


def _failures_of(failures: object, leases: list[Lease]) -> dict[str, BaseException]:
    """Check what a batch handler returned; a malformed answer fails the whole batch (retried)."""
    if failures is None:
        return {}
    if not isinstance(failures, Mapping) or not all(isinstance(e, BaseException) for e in failures.values()):
        error = TypeError(f"a batch handler must return a mapping of message id to exception or None, not {failures!r}")
        log.error("batch_handler_bad_result", error=str(error)[:200])
        return {lease.message_id: error for lease in leases}
    ids = {lease.message_id for lease in leases}
    unknown = [key for key in failures if key not in ids]
    if unknown:
        log.warning("batch_handler_unknown_ids", ids=unknown[:10])
    return {key: error for key, error in failures.items() if key in ids}


def _log_context(lease: Lease) -> AbstractContextManager[None]:
    """Every log line about one message carries its id and the writer's request id."""
    return structlog.contextvars.bound_contextvars(message_id=lease.message_id, request_id=lease.message().request_id)
