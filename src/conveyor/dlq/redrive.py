"""`conveyor dlq redrive`: put dead-lettered messages back on the queue they came from.

Without a filter or limit, SQS's own move task (StartMessageMoveTask, to the configured queue) does
the work, and its progress is reported; where the server refuses it or the task ends FAILED, the
client-side move takes over (and says so). The move task moves messages as they are, so it is not
used when a message's record holds attributes of the message's own (the processor keeps there what
did not fit beside the record): the DLQ is read first, and the client-side move puts them back.
The client-side move sends each message, and deletes it from the DLQ only once SQS has it: a crash
in between duplicates a message, never loses one. It is also the only way to move selectively (by
error type, age, or a limit).

A run moves what was in the DLQ when it started, once: a moved message that fails again comes back
as a new message, and is left for the next run (see :mod:`conveyor.dlq.scan`), so that a processor
that keeps failing what is moved cannot keep a redrive going; a move task that has moved more than
the DLQ held when it started is cancelled for the same reason.

A message goes back to its source queue (from its record, or the source ARN SQS's redrive recorded)
when that queue sends to this DLQ (ListDeadLetterSourceQueues); else to the configured queue. A
source named in a message that does not use this DLQ is refused: a message cannot choose where it goes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.dlq.locate import Located
from conveyor.dlq.record import DeadLettered, Filter, redriven_attributes
from conveyor.dlq.scan import Scan
from conveyor.sqs.batcher import Batcher
from conveyor.sqs.errors import SQS_ERRORS, classify
from conveyor.sqs.limits import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, message_bytes
from conveyor.sqs.queues import FIFO_SUFFIX, queue_name_from_arn, queue_name_from_url

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

Emit = Callable[[str], None]
MOVE_TASK_POLL_SECONDS = 1.0


@dataclass
class RedriveReport:
    method: str
    moved: int = 0
    skipped: int = 0
    failed: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    url: str
    max_bytes: int

    @property
    def fifo(self) -> bool:
        return self.name.endswith(FIFO_SUFFIX)


class Destinations:
    """The queues that send to this DLQ, by name; the configured one is the default."""

    def __init__(self, client: SQSClient, default: Destination, sources: dict[str, str]) -> None:
        self._client = client
        self.default = default
        self._sources = sources  # name -> url
        self._known: dict[str, Destination] = {default.name: default}

    @classmethod
    async def load(cls, client: SQSClient, located: Located) -> Destinations:
        sources: dict[str, str] = {}
        token: dict[str, str] = {}
        while True:
            page = await client.list_dead_letter_source_queues(QueueUrl=located.dlq_url, MaxResults=1000, **token)
            sources.update((queue_name_from_url(url), url) for url in page.get("queueUrls", []))
            if not page.get("NextToken"):
                break
            token = {"NextToken": page["NextToken"]}
        default = Destination(located.name, located.queue.url, located.queue.max_message_bytes)
        return cls(client, default, sources)

    @property
    def only_default(self) -> bool:
        return set(self._sources) <= {self.default.name}

    async def of(self, message: DeadLettered) -> Destination | str:
        """Where ``message`` goes back to, or why it cannot go back."""
        source = message.source_queue
        if source is None:
            return self.default
        name = queue_name_from_arn(source) if source.startswith("arn:") else queue_name_from_url(source)
        if name in self._known:
            return self._known[name]
        if name not in self._sources:
            return f"its source queue {name} does not send to this dead-letter queue"
        url = self._sources[name]
        try:
            attrs = await self._client.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
        except SQS_ERRORS as exc:
            failure = classify(exc)
            return f"source queue {name}: {failure.code} ({failure.message})"
        size = int(attrs["Attributes"].get("MaximumMessageSize", MAX_MESSAGE_BYTES))
        self._known[name] = Destination(name, url, size)
        return self._known[name]


@dataclass(frozen=True, slots=True)
class Request:
    filter: Filter
    limit: int | None
    dry_run: bool


async def redrive(
    client: SQSClient,
    located: Located,
    request: Request,
    emit: Emit,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> RedriveReport:
    # What is in the DLQ now is what this run moves: the copies of moved messages that come back
    # (a processor failing them again), and later dead letters, wait for the next run.
    started_ms = int(time.time() * 1000)
    destinations = await Destinations.load(client, located)
    whole = request.filter.empty and request.limit is None and not request.dry_run
    if whole and destinations.only_default and not located.queue.is_fifo:
        keeper = await _attributes_kept_in_a_record(client, located, started_ms)
        if keeper is not None:
            emit(f"{keeper} keeps attributes inside its dead-letter record, which SQS's move task would not put "
                 "back: the client-side move does it all")  # fmt: skip
            return await _client_side(client, located, destinations, request, emit, started_ms=started_ms)
        report, reason = await _move_task(client, located, emit, sleep)
        if reason is None:
            return report
        emit(f"{reason}: falling back to the client-side move")
        moved_by_task = report.moved
        report = await _client_side(client, located, destinations, request, emit, started_ms=started_ms)
        report.moved += moved_by_task
        report.method = "client-side move, after the move task failed"
        await _note_in_flight(client, located, report)
        return report
    return await _client_side(client, located, destinations, request, emit, started_ms=started_ms)


async def _attributes_kept_in_a_record(client: SQSClient, located: Located, started_ms: int) -> str | None:
    """The id of a message whose record holds attributes of its own, if the DLQ has one. SQS's move
    task moves a message as it is: such a message would go back without them (and with the record
    in their place), so the move task is used only when the DLQ holds none."""
    found = None
    async with Scan(client, located.dlq_url, started_ms=started_ms) as scan:
        async for batch in scan.batches():
            found = next((m.message_id for m in batch if m.overflow_attributes), None)
            if found is not None:
                break
    return found


async def _move_task(
    client: SQSClient, located: Located, emit: Emit, sleep: Callable[[float], Awaitable[None]]
) -> tuple[RedriveReport, str | None]:
    """Run SQS's move task; returns the report and None when it completed, else why it did not."""
    report = RedriveReport("SQS move task (StartMessageMoveTask)")
    try:
        started = await client.start_message_move_task(SourceArn=located.dlq_arn, DestinationArn=located.queue.arn)
    except SQS_ERRORS as exc:
        failure = classify(exc)
        return report, f"StartMessageMoveTask refused: {failure.code} ({failure.message})"
    last: tuple[object, ...] = ()
    cancelling = False
    while True:
        try:
            results = (await client.list_message_move_tasks(SourceArn=located.dlq_arn, MaxResults=1))["Results"]
        except SQS_ERRORS as exc:
            failure = classify(exc)
            return report, f"ListMessageMoveTasks failed: {failure.code} ({failure.message})"
        task: dict[str, Any] = dict(results[0]) if results else {}
        status, moved = task.get("Status", "UNKNOWN"), int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if (status, moved) != last:
            emit(f"move task {status}: {moved} of {task.get('ApproximateNumberOfMessagesToMove', '?')} moved")
            last = (status, moved)
        report.moved = moved
        to_move = task.get("ApproximateNumberOfMessagesToMove")
        if status == "RUNNING" and not cancelling and to_move is not None and moved > int(to_move):
            # More than the DLQ held when the task started: a task that moves until the DLQ is empty
            # (LocalStack's does) moves again what comes back, for as long as a processor fails it.
            try:
                await client.cancel_message_move_task(TaskHandle=started["TaskHandle"])
            except SQS_ERRORS as exc:
                failure = classify(exc)
                return report, f"CancelMessageMoveTask failed: {failure.code} ({failure.message})"
            emit(f"move task moved {moved}, more than the {to_move} the DLQ held when it started (what it moved "
                 "came back): cancelling it")  # fmt: skip
            cancelling = True
        if status == "COMPLETED":
            return report, None
        if status in ("FAILED", "CANCELLED", "UNKNOWN"):
            return report, f"move task {status} ({task.get('FailureReason', 'no reason given')})"
        await sleep(MOVE_TASK_POLL_SECONDS)


async def _client_side(
    client: SQSClient, located: Located, destinations: Destinations, request: Request, emit: Emit, *, started_ms: int
) -> RedriveReport:
    report = RedriveReport("client-side move", dry_run=request.dry_run)
    chosen_total = 0
    async with Scan(client, located.dlq_url, started_ms=started_ms) as scan:
        mover = _Mover(client, scan, located=located, destinations=destinations, report=report, emit=emit)
        async for batch in scan.batches():
            now_ms = int(time.time() * 1000)
            chosen: list[DeadLettered] = []
            for message in batch:
                if request.limit is not None and chosen_total >= request.limit:
                    break
                if request.filter.matches(message, now_ms):
                    chosen.append(message)
                    chosen_total += 1
                else:
                    report.skipped += 1
                    why = ": when it reached the DLQ is not known" if request.filter.age_unknown(message) else ""
                    emit(f"skipped  {message.message_id}  {_kind(message)}{why}")
            await (mover.would_move(chosen) if request.dry_run else mover.move(chosen, now_ms))
            if request.limit is not None and chosen_total >= request.limit:
                break
    if scan.late:
        report.notes.append(
            f"{scan.late} message(s) reached {located.dlq_name} after the redrive started (copies of moved messages "
            "that failed again, or new dead letters) and were left there"
        )
    return report


def _kind(message: DeadLettered) -> str:
    return message.error_type or "(no record)"


class _Mover:
    """Send a batch of chosen messages to their queues, then delete from the DLQ what was sent."""

    def __init__(
        self,
        client: SQSClient,
        scan: Scan,
        *,
        located: Located,
        destinations: Destinations,
        report: RedriveReport,
        emit: Emit,
    ) -> None:
        self._client = client
        self._scan = scan
        self._located = located
        self._destinations = destinations
        self._report = report
        self._emit = emit

    def _failed(self, message: DeadLettered, why: str) -> None:
        self._report.failed += 1
        self._emit(f"failed   {message.message_id}  {_kind(message)}: {why}")

    async def would_move(self, chosen: list[DeadLettered]) -> None:
        for message in chosen:
            destination = await self._destinations.of(message)
            if isinstance(destination, str):
                self._failed(message, destination)
            else:
                self._report.moved += 1
                self._emit(f"would move {message.message_id}  {_kind(message)} -> {destination.name}")

    async def move(self, chosen: list[DeadLettered], now_ms: int) -> None:
        groups: dict[str, tuple[Destination, list[DeadLettered]]] = {}
        for message in chosen:
            destination = await self._destinations.of(message)
            if isinstance(destination, str):
                self._failed(message, destination)
            else:
                groups.setdefault(destination.name, (destination, []))[1].append(message)
        for destination, messages in groups.values():
            sent = await self._send(destination, messages, now_ms)
            await self._delete(destination, sent)

    async def _send(
        self, destination: Destination, messages: list[DeadLettered], now_ms: int
    ) -> list[tuple[DeadLettered, str]]:
        """SendMessageBatch to the destination; returns (message, new message id) of those SQS took.

        The calls are cut as the writer cuts them (the one batcher): at most ten entries, and at most
        the destination's MaximumMessageSize (1 MiB at most) in all, since SQS refuses a whole call
        over that with BatchRequestTooLong: large dead letters in one call would fail on every run."""
        entries = [_entry(str(n), message, destination, now_ms) for n, message in enumerate(messages)]

        async def call(batch: Sequence[dict[str, Any]]) -> list[str | BaseException]:
            try:
                response = await self._client.send_message_batch(QueueUrl=destination.url, Entries=list(batch))  # type: ignore[arg-type]
            except SQS_ERRORS as exc:
                failure = classify(exc)
                return [_NotSentError(f"{failure.code} ({failure.message})") for _ in batch]
            answers: dict[str, str | BaseException] = {
                ok["Id"]: ok["MessageId"] for ok in response.get("Successful", [])
            }
            for f in response.get("Failed", []):
                answers[f["Id"]] = _NotSentError(f"{f['Code']} ({f.get('Message', '')})")
            return [answers.get(e["Id"], _NotSentError("SQS reported neither success nor failure")) for e in batch]

        batcher: Batcher[dict[str, Any], str] = Batcher(
            call, linger=0, max_bytes=min(MAX_BATCH_BYTES, destination.max_bytes), size_of=_entry_bytes
        )
        async with batcher:
            answers = [batcher.submit_nowait(entry) for entry in entries]
        sent = []
        for message, answer in zip(messages, answers, strict=True):
            problem = answer.exception()
            if problem is None:
                sent.append((message, answer.result()))
                self._scan.sent(answer.result())
            else:
                self._failed(message, f"not sent to {destination.name}: {problem}")
        return sent

    async def _delete(self, destination: Destination, sent: list[tuple[DeadLettered, str]]) -> None:
        """Delete from the DLQ what the destination has; a failure leaves a duplicate, and says so."""
        if not sent:
            return
        entries = [{"Id": str(n), "ReceiptHandle": message.receipt_handle} for n, (message, _) in enumerate(sent)]
        try:
            response = await self._client.delete_message_batch(QueueUrl=self._located.dlq_url, Entries=entries)  # type: ignore[arg-type]
            failed = {f["Id"]: f"{f['Code']} ({f.get('Message', '')})" for f in response.get("Failed", [])}
        except SQS_ERRORS as exc:
            failure = classify(exc)
            failed = {entry["Id"]: f"{failure.code} ({failure.message})" for entry in entries}
        for n, (message, new_id) in enumerate(sent):
            why = failed.get(str(n))
            if why is None:
                self._scan.deleted(message.message_id)
                self._report.moved += 1
                self._emit(f"moved    {message.message_id}  {_kind(message)} -> {destination.name} as {new_id}")
            else:
                self._failed(message, f"sent to {destination.name} as {new_id} but not deleted from the DLQ "
                                      f"(it is on both now): {why}")  # fmt: skip


class _NotSentError(Exception):
    """Why SQS did not take an entry (its code and message)."""


def _entry_bytes(entry: Mapping[str, Any]) -> int:
    return message_bytes(entry["MessageBody"], entry.get("MessageAttributes", {}))


def _entry(entry_id: str, message: DeadLettered, destination: Destination, now_ms: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    attributes = redriven_attributes(message, now_ms, destination.max_bytes)
    if attributes:
        entry["MessageAttributes"] = attributes
    if destination.fifo:
        entry["MessageGroupId"] = message.system.get("MessageGroupId", "redrive")
        entry["MessageDeduplicationId"] = message.message_id  # a rerun within 5 minutes is not a duplicate
    return entry


async def _note_in_flight(client: SQSClient, located: Located, report: RedriveReport) -> None:
    """A failed move task may leave messages invisible for the DLQ's visibility timeout."""
    try:
        attrs = await client.get_queue_attributes(
            QueueUrl=located.dlq_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
    except SQS_ERRORS:
        return
    in_flight = int(attrs["Attributes"].get("ApproximateNumberOfMessagesNotVisible", "0"))
    if in_flight:
        report.notes.append(
            f"{in_flight} message(s) of {located.dlq_name} are in flight (held by the failed move task or another "
            "reader) and were not looked at: run the redrive again once they are visible"
        )
