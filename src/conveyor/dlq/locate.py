"""Find the configured queue and its dead-letter queue, or say in one line why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.command_error import CommandError, sqs_trouble
from conveyor.settings import SqsSettings
from conveyor.sqs.errors import SQS_ERRORS
from conveyor.sqs.queues import (
    QueueConfig,
    dlq_url_of,
    queue_name_from_arn,
    queue_name_of,
    read_queue_config,
    resolve_queue_url,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


@dataclass(frozen=True, slots=True)
class Located:
    name: str
    queue: QueueConfig
    dlq_name: str
    dlq_url: str
    dlq_arn: str


async def read_queue(client: SQSClient, settings: SqsSettings) -> QueueConfig:
    name = queue_name_of(settings)
    try:
        return await read_queue_config(client, await resolve_queue_url(client, settings))
    except SQS_ERRORS as exc:
        raise sqs_trouble(f"queue {name}", exc) from exc


async def locate(client: SQSClient, settings: SqsSettings) -> Located:
    """The queue and its DLQ (from the queue's RedrivePolicy)."""
    queue = await read_queue(client, settings)
    name = queue_name_of(settings)
    if queue.dlq_arn is None:
        raise CommandError(
            f"queue {name} has no dead-letter queue (no RedrivePolicy; `conveyor queues create` sets one)"
        )
    dlq_name = queue_name_from_arn(queue.dlq_arn)
    try:
        dlq_url = await dlq_url_of(client, queue)
    except SQS_ERRORS as exc:
        raise sqs_trouble(f"dead-letter queue {dlq_name}", exc) from exc
    assert dlq_url is not None  # noqa: S101 - dlq_arn is set
    return Located(name, queue, dlq_name, dlq_url, queue.dlq_arn)
