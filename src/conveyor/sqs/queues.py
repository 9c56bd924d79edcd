"""Queue bootstrap and discovery: create the queue, its DLQ and its canary queue, resolve URLs, read
attributes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from conveyor.sqs.limits import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

FIFO_SUFFIX = ".fifo"
CANARY_RETENTION_SECONDS = 600  # replies are read within seconds; an unread one is of no use after this


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """What the services need to know about the queue, read with GetQueueAttributes at start-up."""

    url: str
    arn: str
    max_message_bytes: int
    visibility_timeout: int
    is_fifo: bool
    content_based_dedup: bool
    dlq_arn: str | None
    max_receive_count: int | None

    @property
    def name(self) -> str:
        """The queue's name: the last part of its URL."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


class QueueLocation(Protocol):
    """Where the queue is, as the settings say it (``conveyor.settings.SqsSettings`` has it; sqs/
    does not import the settings: they sit above it)."""

    @property
    def queue_url(self) -> object | None: ...  # a URL (pydantic's AnyHttpUrl), or None: by name
    @property
    def queue_name(self) -> str: ...


def dlq_name(queue_name: str) -> str:
    """``orders`` -> ``orders-dlq``; ``orders.fifo`` -> ``orders-dlq.fifo`` (same queue type)."""
    if queue_name.endswith(FIFO_SUFFIX):
        return queue_name.removesuffix(FIFO_SUFFIX) + "-dlq" + FIFO_SUFFIX
    return queue_name + "-dlq"


def fifo_name(queue_name: str) -> str:
    """``orders`` -> ``orders.fifo`` (a name that ends so already is kept)."""
    return queue_name if queue_name.endswith(FIFO_SUFFIX) else queue_name + FIFO_SUFFIX


def canary_name(queue_name: str) -> str:
    """``orders`` and ``orders.fifo`` -> ``orders-canary``: always a standard queue (replies need no order)."""
    return queue_name.removesuffix(FIFO_SUFFIX) + "-canary"


def queue_name_from_arn(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def queue_name_from_url(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def queue_name_of(settings: QueueLocation) -> str:
    """The configured queue's name (from CONVEYOR_QUEUE_URL when set)."""
    return queue_name_from_url(str(settings.queue_url)) if settings.queue_url else settings.queue_name


async def create_queues(
    client: SQSClient, name: str, max_receive_count: int, *, content_based_dedup: bool = False
) -> tuple[str, str]:
    """Create ``name`` and ``<name>-dlq`` with a redrive policy, and the canary queue; idempotent.
    A ``.fifo`` name makes a FIFO pair (``content_based_dedup``: the queue derives deduplication ids
    from the body). Returns the URLs of the queue and its DLQ."""
    fifo: dict[QueueAttributeNameType, str] = {"FifoQueue": "true"} if name.endswith(FIFO_SUFFIX) else {}
    dlq_url = (await client.create_queue(QueueName=dlq_name(name), Attributes=fifo))["QueueUrl"]
    dlq_attrs = await client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    dlq_arn = dlq_attrs["Attributes"]["QueueArn"]
    url = (await client.create_queue(QueueName=name, Attributes=fifo))["QueueUrl"]
    policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
    # Set separately so that re-running with another maxReceiveCount updates, not conflicts.
    attributes: dict[QueueAttributeNameType, str] = {"RedrivePolicy": json.dumps(policy)}
    if fifo:
        attributes["ContentBasedDeduplication"] = "true" if content_based_dedup else "false"
    await client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    await create_canary_queue(client, name)
    return url, dlq_url


async def create_canary_queue(client: SQSClient, name: str) -> str:
    """Create ``<name>-canary`` (idempotent: the retention is set apart, as the redrive policy is)."""
    url = (await client.create_queue(QueueName=canary_name(name)))["QueueUrl"]
    retention = str(CANARY_RETENTION_SECONDS)
    await client.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": retention})
    return url


async def resolve_queue_url(client: SQSClient, settings: QueueLocation) -> str:
    """The queue URL from CONVEYOR_QUEUE_URL, else looked up by CONVEYOR_QUEUE_NAME."""
    if settings.queue_url is not None:
        return str(settings.queue_url)
    return (await client.get_queue_url(QueueName=settings.queue_name))["QueueUrl"]


async def canary_queue_url(client: SQSClient, settings: QueueLocation) -> str:
    """The URL of the configured queue's canary queue (in the queue's account)."""
    extra = {}
    if settings.queue_url is not None:
        account = str(settings.queue_url).rstrip("/").split("/")[-2]
        if account.isdigit():
            extra["QueueOwnerAWSAccountId"] = account
    response = await client.get_queue_url(QueueName=canary_name(queue_name_of(settings)), **extra)
    return response["QueueUrl"]


async def read_queue_config(client: SQSClient, url: str) -> QueueConfig:
    """Read the attributes the services depend on (max size, visibility, redrive policy)."""
    attrs = (await client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"]) if attrs.get("RedrivePolicy") else {}
    count = redrive.get("maxReceiveCount")
    return QueueConfig(
        url=url,
        arn=attrs.get("QueueArn", ""),
        max_message_bytes=int(attrs.get("MaximumMessageSize", MAX_MESSAGE_BYTES)),
        visibility_timeout=int(attrs.get("VisibilityTimeout", 30)),
        is_fifo=attrs.get("FifoQueue", "false") == "true",
        content_based_dedup=attrs.get("ContentBasedDeduplication", "false") == "true",
        dlq_arn=redrive.get("deadLetterTargetArn"),
        max_receive_count=int(count) if count is not None else None,
    )


async def dlq_url_of(client: SQSClient, config: QueueConfig) -> str | None:
    """The dead-letter queue's URL, found from the source queue's RedrivePolicy."""
    if config.dlq_arn is None:
        return None
    account = config.dlq_arn.split(":")[4]
    response = await client.get_queue_url(QueueName=queue_name_from_arn(config.dlq_arn), QueueOwnerAWSAccountId=account)
    return response["QueueUrl"]
