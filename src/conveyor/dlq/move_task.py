"""SQS's own move task (StartMessageMoveTask) for a whole redrive, its progress reported as it goes.

A move task that has moved more than the DLQ held when it started is cancelled: a task that moves
until the DLQ is empty would move again what comes back, for as long as a processor fails it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from conveyor.dlq.locate import Located
from conveyor.dlq.report import Emit, RedriveReport
from conveyor.sqs.errors import SQS_ERRORS, classify

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

MOVE_TASK_POLL_SECONDS = 1.0


async def run_move_task(
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
