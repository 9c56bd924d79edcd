"""`conveyor status`: the queue, its dead-letter queue and its canary queue at a glance.

Counts are SQS's approximate attributes. The age of the oldest message is shown only where the
server reports it as a queue attribute: on AWS it is the CloudWatch metric
ApproximateAgeOfOldestMessage, not an attribute, and sampling messages would not be an honest
substitute (a receive sees some messages, not the oldest), so it is "n/a" there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from conveyor.command_error import sqs_trouble
from conveyor.dlq.locate import read_queue
from conveyor.settings import SqsSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import SQS_ERRORS, classify
from conveyor.sqs.queues import canary_name, canary_queue_url, dlq_url_of, queue_name_from_arn, queue_name_of

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

OLDEST = "ApproximateAgeOfOldestMessage"
OLDEST_NOTE = (
    "oldest: n/a where SQS does not report it (on AWS it is the CloudWatch metric ApproximateAgeOfOldestMessage)"
)


@dataclass(frozen=True, slots=True)
class QueueStatus:
    role: str  # queue, dlq, canary
    name: str
    url: str | None
    problem: str | None = None  # why no figures: missing or unreachable
    visible: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    oldest_age_seconds: int | None = None
    redrive_policy: dict[str, Any] | None = None
    retention_seconds: int | None = None


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "status", help="the queue, its DLQ and its canary queue at a glance", description=__doc__
    )
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.set_defaults(run=run, prog="conveyor status")


def run(args: argparse.Namespace) -> int:
    settings = SqsSettings()
    statuses = asyncio.run(collect(settings))
    if args.json:
        print(json.dumps({"queues": [asdict(s) for s in statuses]}, indent=2))
    else:
        print(render(statuses))
    return 0


async def collect(settings: SqsSettings) -> list[QueueStatus]:
    """The three queues; raises a one-line CommandError when the queue itself is missing or unreachable."""
    async with sqs_client(settings) as client:
        return await collect_with(client, settings)


async def collect_with(client: SQSClient, settings: SqsSettings) -> list[QueueStatus]:
    """:func:`collect` with a client of the caller's (the console's)."""
    queue = await read_queue(client, settings)
    name = queue_name_of(settings)
    try:
        main = await _status(client, "queue", name, queue.url)
    except SQS_ERRORS as exc:
        raise sqs_trouble(f"queue {name}", exc) from exc
    statuses = [main]
    if queue.dlq_arn is None:
        statuses.append(QueueStatus("dlq", "-", None, problem="none: the queue has no RedrivePolicy"))
    else:
        statuses.append(await _other(client, "dlq", queue_name_from_arn(queue.dlq_arn), dlq_url_of(client, queue)))
    canary_url = canary_queue_url(client, settings)
    statuses.append(await _other(client, "canary", canary_name(name), canary_url))
    return statuses


async def _other(client: SQSClient, role: str, name: str, url: Awaitable[str | None]) -> QueueStatus:
    """A queue whose absence is reported in its row, not as a failure of the command."""
    try:
        found = await url
        if found is None:
            return QueueStatus(role, name, None, problem="missing")
        return await _status(client, role, name, found)
    except SQS_ERRORS as exc:
        failure = classify(exc)
        return QueueStatus(role, name, None, problem=f"{failure.code} ({failure.message})")


async def _status(client: SQSClient, role: str, name: str, url: str) -> QueueStatus:
    attrs = (await client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
    oldest = attrs.get(OLDEST)  # type: ignore[call-overload]  # not an SQS attribute name; some servers add it
    return QueueStatus(
        role=role,
        name=name,
        url=url,
        visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        oldest_age_seconds=int(oldest) if oldest is not None else None,
        redrive_policy=json.loads(attrs["RedrivePolicy"]) if attrs.get("RedrivePolicy") else None,
        retention_seconds=int(attrs["MessageRetentionPeriod"]) if "MessageRetentionPeriod" in attrs else None,
    )


def render(statuses: list[QueueStatus]) -> str:
    width = max(len(s.name) for s in statuses)
    columns = f"{'visible':>7}  {'in flight':>9}  {'delayed':>7}  {'oldest':>6}"
    lines = [f"{'role':<8}{'queue':<{width}}  {columns}  redrive policy"]
    for s in statuses:
        if s.problem is not None:
            lines.append(f"{s.role:<8}{s.name:<{width}}  {s.problem}")
            continue
        oldest = f"{s.oldest_age_seconds} s" if s.oldest_age_seconds is not None else "n/a"
        lines.append(
            f"{s.role:<8}{s.name:<{width}}  {s.visible:>7}  {s.in_flight:>9}  {s.delayed:>7}  {oldest:>6}  "
            f"{_policy(s.redrive_policy)}"
        )
    lines.append(OLDEST_NOTE)
    return "\n".join(lines)


def _policy(policy: dict[str, Any] | None) -> str:
    if not policy:
        return "none"
    target = queue_name_from_arn(str(policy.get("deadLetterTargetArn", "?")))
    return f"to {target} after {policy.get('maxReceiveCount', '?')} receives"
