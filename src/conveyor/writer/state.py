"""What the writer's routes share: the SQS client, the queue (once known), the batcher, the metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from conveyor.settings import WriterSettings
from conveyor.sqs.batcher import Batcher, BatcherClosedError, Settle
from conveyor.sqs.errors import UNREACHABLE, Kind, SqsError, SqsFailure
from conveyor.sqs.limits import MAX_BATCH_BYTES
from conveyor.sqs.queues import QueueConfig
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.outgoing import Outgoing
from conveyor.writer.problems import EntryProblem, from_sqs
from conveyor.writer.sender import Sender

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.writer")
STARTING = SqsFailure("Starting", "the queue has not been read yet", Kind.RETRYABLE, UNREACHABLE.summary)


@dataclass
class WriterState:
    settings: WriterSettings
    client: SQSClient
    metrics: WriterMetrics
    queue: QueueConfig | None = None  # None until start-up could read it
    failure: SqsFailure = STARTING  # why the queue is not known (yet, or for good)
    sender: Sender | None = None
    ready_until: float = field(default=0.0)
    batcher: Batcher[Outgoing, str] = field(init=False)  # entered by the app's lifespan

    def __post_init__(self) -> None:
        self.batcher = Batcher(
            settle_each=self.flush,  # SqsError outcomes become the submitter's exception
            linger=self.settings.batch_linger_ms / 1000,
            size_of=lambda o: o.size,
            on_flush=self.metrics.observe_batch,
        )

    def attach(self, queue: QueueConfig) -> None:
        """The queue is known: messages can be validated against it and sent."""
        self.sender = Sender(self.client, queue.url, self.settings.send_retries)
        # SQS caps a SendMessageBatch's total by the queue's own MaximumMessageSize: a queue still
        # at 256 KiB refuses a call of three 100 KiB messages with BatchRequestTooLong.
        self.batcher.max_bytes = min(MAX_BATCH_BYTES, queue.max_message_bytes)
        self.queue = queue

    def set_failure(self, failure: SqsFailure) -> None:
        self.failure = failure

    def require_queue(self) -> QueueConfig:
        """The queue's configuration; until it is known, the start-up failure as the answer."""
        if self.queue is not None:
            return self.queue
        raise from_sqs(self.failure)

    async def flush(self, messages: Sequence[Outgoing], settle: Settle[str]) -> None:
        """The batcher's call: each message is settled as soon as SQS's answer for it is known."""
        if self.sender is None:
            raise RuntimeError("a message was submitted before the queue was known")
        await self.sender.send_each(messages, settle)

    async def send(self, outgoing: Outgoing) -> str:
        """Send one message through the coalescing batcher; raise :class:`EntryProblem`."""
        started = time.monotonic()
        try:
            message_id = await self.batcher.submit(outgoing)
        except SqsError as exc:
            self.metrics.messages.labels("sqs_error").inc()
            problem = from_sqs(exc.failure)
            log_event = log.error if problem.status >= 500 else log.warning
            # SQS's own text is for the log: it may name key ARNs and account ids.
            log_event(
                "sqs_send_failed",
                status=problem.status,
                code=exc.failure.code,
                error=exc.failure.message,
                request_id=outgoing.request_id,
            )
            raise problem from exc
        except BatcherClosedError as exc:
            raise EntryProblem(503, "Shutting down", "this writer is stopping", retryable=True) from exc
        finally:
            self.metrics.batch_wait.observe(time.monotonic() - started)
        self.metrics.messages.labels("accepted").inc()
        self.metrics.message_bytes.observe(outgoing.size)
        return message_id
