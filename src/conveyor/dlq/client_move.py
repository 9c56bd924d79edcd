"""The client-side move: each chosen message sent to its queue, then deleted from the DLQ once SQS
has it (a crash in between duplicates a message, never loses one). The only way to move
selectively (by error type, age, or a limit), and the way back for attributes a message's record
holds, which SQS's move task would not restore."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.dlq.destinations import Destination, Destinations
from conveyor.dlq.locate import Located
from conveyor.dlq.record import DeadLettered, redriven_attributes
from conveyor.dlq.report import Emit, RedriveReport, Request
from conveyor.dlq.scan import Scan
from conveyor.sqs.batcher import Batcher
from conveyor.sqs.errors import SQS_ERRORS, classify
from conveyor.sqs.limits import MAX_BATCH_BYTES, message_bytes

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


async def client_side_move(
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
