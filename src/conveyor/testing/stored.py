"""What the in-memory SQS stores (queues, messages) and the rules it shares with SQS: the errors it
answers with, the sizes it counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

ACCOUNT = "000000000000"
BASE = "http://in-memory-sqs/queue/us-east-1/" + ACCOUNT + "/"


def client_error(code: str, operation: str, status: int = 400, message: str = "injected") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def entry_bytes(entry: dict[str, Any]) -> int:
    """What SQS counts of a message: the body, and each attribute's name, type and value (UTF-8)."""
    size = len(entry["MessageBody"].encode())
    for name, attribute in entry.get("MessageAttributes", {}).items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        size += len(name.encode()) + len(attribute["DataType"].encode())
        size += len(value if isinstance(value, bytes) else value.encode())
    return size


@dataclass
class StoredMessage:
    message_id: str
    body: str
    attributes: dict[str, Any]
    sent_ms: int
    group_id: str | None = None
    sequence_number: int = 0
    receive_count: int = 0
    visible_at: float = 0.0
    receipt_handle: str | None = None
    received_at: float | None = None  # when the current receive handed it out (the 12 h cap counts from it)


@dataclass
class StoredQueue:
    name: str
    attributes: dict[str, str]
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    deleted: list[StoredMessage] = field(default_factory=list)

    @property
    def url(self) -> str:
        return BASE + self.name

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{self.name}"


def check_entries(entries: list[dict[str, Any]], operation: str) -> None:
    """What SQS answers to an empty batch or one of more than ten entries."""
    if not entries:
        raise client_error("AWS.SimpleQueueService.EmptyBatchRequest", operation)
    if len(entries) > 10:
        raise client_error("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", operation)


def value_bytes(attribute: dict[str, Any]) -> bytes:
    value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
    return value if isinstance(value, bytes) else str(value).encode()
