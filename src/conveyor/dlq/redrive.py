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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from conveyor.dlq.client_move import client_side_move
from conveyor.dlq.destinations import Destinations
from conveyor.dlq.locate import Located
from conveyor.dlq.move_task import run_move_task
from conveyor.dlq.report import Emit, RedriveReport, Request
from conveyor.dlq.scan import Scan
from conveyor.sqs.errors import SQS_ERRORS

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


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
            return await client_side_move(client, located, destinations, request, emit, started_ms=started_ms)
        report, reason = await run_move_task(client, located, emit, sleep)
        if reason is None:
            return report
        emit(f"{reason}: falling back to the client-side move")
        moved_by_task = report.moved
        report = await client_side_move(client, located, destinations, request, emit, started_ms=started_ms)
        report.moved += moved_by_task
        report.method = "client-side move, after the move task failed"
        await _note_in_flight(client, located, report)
        return report
    return await client_side_move(client, located, destinations, request, emit, started_ms=started_ms)


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
