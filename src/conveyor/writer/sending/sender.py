"""The writer's sending path: messages coalesced into SendMessageBatch calls, each caller answered
with its own message's SQS MessageId, or the problem that tells the client why not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import structlog

from conveyor.payloads.pointer import Pointer
from conveyor.settings import WriterSettings
from conveyor.sqs.batch_call import EntryResult, call_batch
from conveyor.sqs.batcher import Batcher, BatcherClosedError, Settle
from conveyor.sqs.errors import SqsError
from conveyor.sqs.limits import MAX_BATCH_BYTES
from conveyor.sqs.queues import QueueConfig
from conveyor.sqs.send_batch import BatchSender
from conveyor.tracing import NO_TRACING, NoTracing, Tracing
from conveyor.writer.api.problems import EntryProblem, from_sqs
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.sending.offload import Offloader
from conveyor.writer.sending.outgoing import Outgoing

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.writer")
type SendResult = str | SqsError  # the SQS MessageId, or why this entry was not taken


class Sender:
    """Sends validated messages to the queue through one coalescing batcher (an async context
    manager: leaving it flushes what is waiting and waits for the calls in flight)."""

    def __init__(
        self,
        client: SQSClient,
        settings: WriterSettings,
        metrics: WriterMetrics,
        tracing: NoTracing | Tracing = NO_TRACING,
        *,
        direct: bool = False,
        offloader: Offloader | None = None,
        on_accepted: Callable[[Outgoing, str], None] | None = None,
    ) -> None:
        self._on_accepted = on_accepted  # the mirror's offer: told of each message SQS took, after it did
        self._client = client
        self._offloader = offloader  # with a payload bucket: messages over the threshold go through S3
        # With a real aiobotocore client: SendMessageBatch without its per-call preparation (sqs/send_batch.py).
        self._batch_sender = BatchSender(client) if direct else None
        self._tracing = tracing
        self._entry_retries = settings.send_retries
        self._metrics = metrics
        self._accepted = metrics.messages.labels("accepted")  # looked up once: a few microseconds a message
        self._queue_url: str | None = None  # until the queue is known
        self._queue_name = ""
        self._batcher: Batcher[Outgoing, str] = Batcher(
            settle_each=self._send_each,  # SqsError outcomes become the submitter's exception
            linger=settings.send_linger_seconds,
            size_of=lambda o: o.size,
            on_flush=metrics.observe_batch,
            eager=settings.send_eagerly,
        )

    async def __aenter__(self) -> Self:
        await self._batcher.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._batcher.__aexit__(et, e, tb)

    def attach(self, queue: QueueConfig) -> None:
        """The queue is known: messages can be sent to it."""
        self._queue_url = queue.url
        self._queue_name = queue.name
        # SQS caps a SendMessageBatch's total by the queue's own MaximumMessageSize: a queue still
        # at 256 KiB refuses a call of three 100 KiB messages with BatchRequestTooLong.
        self._batcher.max_bytes = min(MAX_BATCH_BYTES, queue.max_message_bytes)

    async def send(self, outgoing: Outgoing) -> str:
        """Send one message through the coalescing batcher; raise :class:`EntryProblem`."""
        if outgoing.offload:
            return await self._send_offloaded(outgoing)
        try:
            future = self._batcher.submit_nowait(outgoing)
        except BatcherClosedError as exc:
            raise _shutting_down() from exc
        return await self._answer(future, outgoing, time.monotonic())

    async def send_now(self, outgoing: Sequence[Outgoing]) -> list[str | BaseException]:
        """Send messages at once, without waiting for company (nothing more of theirs will come): a
        MessageId or an exception (:class:`EntryProblem` for what the client is told) per message."""
        if any(o.offload for o in outgoing):
            return await self._send_now_offloaded(outgoing)
        started = time.monotonic()
        try:
            futures = [self._batcher.submit_nowait(o) for o in outgoing]
        except BatcherClosedError as exc:
            return [_shutting_down(exc) for _ in outgoing]
        self._batcher.flush_now()
        answers = (self._answer(f, o, started) for f, o in zip(futures, outgoing, strict=True))
        return await asyncio.gather(*answers, return_exceptions=True)

    async def _send_offloaded(self, outgoing: Outgoing) -> str:
        """Store the payload in S3, then send its pointer; the object goes if SQS surely did not take it."""
        stored, pointer = await self._require_offloader().store(outgoing)
        try:
            return await self.send(stored)
        except EntryProblem as problem:
            await self._require_offloader().unsent(pointer, problem)
            raise

    async def _send_now_offloaded(self, outgoing: Sequence[Outgoing]) -> list[str | BaseException]:
        """:meth:`send_now` for messages some of which go through S3: those stored first (a failed
        store is that message's answer), then every pointer and message at once."""
        offloader = self._require_offloader()
        stored = await asyncio.gather(
            *(offloader.store(o) if o.offload else _as_is(o) for o in outgoing), return_exceptions=True
        )
        ready = [item for item in stored if isinstance(item, tuple)]
        sent = iter(await self.send_now([message for message, _ in ready]))
        results: list[str | BaseException] = []
        for item in stored:
            if not isinstance(item, tuple):
                results.append(item)
                continue
            result = next(sent)
            if item[1] is not None and isinstance(result, EntryProblem):
                await offloader.unsent(item[1], result)
            results.append(result)
        return results

    def _require_offloader(self) -> Offloader:
        if self._offloader is None:  # build_outgoing marks none without a rule: a bug of ours
            raise RuntimeError("a message marked for S3 without a payload bucket")
        return self._offloader

    async def _answer(self, future: Awaitable[str], outgoing: Outgoing, started: float) -> str:
        try:
            message_id = await future
        except SqsError as exc:
            self._metrics.messages.labels("sqs_error").inc()
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
        finally:
            self._metrics.batch_wait.observe(time.monotonic() - started)
        self._accepted.inc()
        self._metrics.message_bytes.observe(outgoing.size)
        if self._on_accepted is not None:
            self._on_accepted(outgoing, message_id)
        return message_id

    async def _send_each(self, messages: Sequence[Outgoing], settle: Settle[str]) -> None:
        """The batcher's call: each message is settled with its MessageId or its error as soon as
        that is known (an entry being retried does not hold back the others' answers)."""
        queue_url = self._queue_url
        if queue_url is None:
            raise RuntimeError("a message was submitted before the queue was known")

        async def call(entries: list[Any]) -> Any:
            if self._batch_sender is not None:
                return await self._batch_sender(queue_url, entries)
            return await self._client.send_message_batch(QueueUrl=queue_url, Entries=entries)

        def on_result(index: int, result: EntryResult) -> None:
            settle(index, _message_id_or_error(result))

        entries = [m.entry() for m in messages]
        if not self._tracing.enabled:
            await call_batch(call, entries, self._entry_retries, on_result)
            return
        with self._tracing.send_batch(self._queue_name, [m.traceparent for m in messages]):
            await call_batch(call, entries, self._entry_retries, on_result)


async def _as_is(outgoing: Outgoing) -> tuple[Outgoing, Pointer | None]:
    return outgoing, None


def _shutting_down(cause: BaseException | None = None) -> EntryProblem:
    problem = EntryProblem(503, "Shutting down", "this writer is stopping", retryable=True)
    problem.__cause__ = cause
    return problem


def _message_id_or_error(result: EntryResult) -> SendResult:
    return result if isinstance(result, SqsError) else str(result["MessageId"])
