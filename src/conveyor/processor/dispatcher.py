"""Runs the handler on each buffered message, ``concurrency`` at a time, and applies the outcome.

Concurrency is the number of workers, independent of the receive batch size: one slow message
never holds up the others of its batch. A worker frees its slot as soon as the handler returns;
the delete or visibility change is coalesced by the acker and settled without blocking the worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from conveyor.processor.acker import Acker
from conveyor.processor.config import EngineConfig
from conveyor.processor.dead_letter import send_to_dlq
from conveyor.processor.handler import Handler
from conveyor.processor.lease import Lease, Stage
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.outcome import Ack, DeadLetter, RetryAfter, RetryPolicy, decide
from conveyor.processor.slots import Slots
from conveyor.sqs.errors import classify

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.processor")


class Dispatcher:
    def __init__(
        self,
        client: SQSClient,
        config: EngineConfig,
        handler: Handler,
        *,
        buffer: asyncio.Queue[Lease],
        slots: Slots,
        acker: Acker,
        metrics: ProcessorMetrics,
    ) -> None:
        self._client = client
        self._config = config
        self._handler = handler
        self._buffer = buffer
        self._slots = slots
        self._acker = acker
        self._metrics = metrics
        # Without a dead-letter queue nothing is dead-lettered by us: permanent errors back off.
        self.stopping = False
        self._policy = RetryPolicy(
            config.retry_base_seconds,
            config.retry_max_seconds,
            config.max_receive_count if config.dlq_url else None,
        )

    async def worker(self) -> None:
        """Take buffered messages one at a time until cancelled; once stopping, start none."""
        while True:
            lease = await self._buffer.get()
            try:
                if self.stopping:
                    self.release(lease)
                else:
                    await self.process(lease)
            finally:
                await self._slots.give_back(1)

    def release(self, lease: Lease) -> None:
        """Visibility 0: delivered again at once, to this or another processor, without waiting
        out the timeout (the receive it cost is not counted as a failure by us)."""
        lease.stage = Stage.SETTLING
        self._metrics.released.inc()
        self._acker.change_visibility(lease, 0, release=True)

    async def process(self, lease: Lease) -> None:
        lease.stage = Stage.RUNNING
        request_id = lease.message().request_id
        with structlog.contextvars.bound_contextvars(message_id=lease.message_id, request_id=request_id):
            error = await self._run_handler(lease)
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

    async def _run_handler(self, lease: Lease) -> BaseException | None:
        started = time.perf_counter()
        self._metrics.running.inc()
        try:
            await self._handler(lease.message())
        except Exception as exc:  # noqa: BLE001 - every handler error becomes an outcome
            return exc
        finally:
            self._metrics.running.dec()
            self._metrics.handler_seconds.observe(time.perf_counter() - started)
        return None

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
