"""Dead-lettering by the processor: the original body and attributes, plus what went wrong.

The error travels in one attribute, ``conveyor.dead_letter`` (JSON: error type, error message
(truncated), original message id, receive count, source queue, time), so that it fits SQS's limit of
10 attributes beside the originals. Originals beyond room (a message that already had 10) are kept
inside that JSON, values and types intact (binary ones as base64).

The copy must fit the dead-letter queue's ``MaximumMessageSize``: a message that fits its own queue
can exceed it once the record is added. The record then shrinks, step by step (a shorter error
message, the overflow attributes dropped, down to the original message id alone, then no record),
so that a permanent failure is always dead-lettered at once with as much of its story as fits.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor import metadata
from conveyor.processor.lease import Lease
from conveyor.processor.outcome import DeadLetter
from conveyor.sqs import limits

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageAttributeValueTypeDef

SHORT_ERROR_CHARS = 64

type Attributes = dict[str, MessageAttributeValueTypeDef]


class DeadLetterTooLargeError(Exception):
    """The message alone (body and the attributes SQS allows) exceeds the dead-letter queue's size
    limit: it cannot be copied; SQS's own redrive policy will move it."""


@dataclass(frozen=True, slots=True)
class DeadLetterQueue:
    """Where dead-lettered copies go, and the rules of that queue."""

    client: SQSClient
    url: str
    source_queue: str
    fifo: bool
    max_bytes: int

    async def send(self, lease: Lease, outcome: DeadLetter) -> str:
        """Send the copy; returns its MessageId. Raises on failure (the caller deletes nothing)."""
        attributes = fitting_attributes(lease, outcome, self.source_queue, self.max_bytes)
        extra: dict[str, Any] = {}
        if self.fifo:
            extra["MessageGroupId"] = lease.system.get("MessageGroupId", "dead-letter")
            extra["MessageDeduplicationId"] = lease.message_id
        response = await self.client.send_message(
            QueueUrl=self.url, MessageBody=lease.body, MessageAttributes=attributes, **extra
        )
        return response["MessageId"]


def fitting_attributes(lease: Lease, outcome: DeadLetter, source_queue: str, max_bytes: int) -> Attributes:
    """The originals and the fullest record that keeps the copy within ``max_bytes``. User values
    come first: the record shrinks but never drops one; when no record fits beside them all, the
    copy carries the originals alone (as SQS's own redrive would)."""
    originals = {k: _clean(v) for k, v in lease.attributes.items() if k != metadata.DEAD_LETTER}
    names = list(originals)
    room = limits.MAX_ATTRIBUTES - 1
    kept = {name: originals[name] for name in names[:room]}
    carried = _overflow_of(lease.attributes.get(metadata.DEAD_LETTER))  # a redriven copy failing again
    overflow = {name: _as_json(originals[name]) for name in names[room:]} | carried
    for record in _records(lease, outcome, source_queue, overflow):
        attributes = kept | {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": record}}
        if limits.message_bytes(lease.body, attributes) <= max_bytes:
            return attributes
    if not carried and limits.message_bytes(lease.body, originals) <= max_bytes:
        return originals
    raise DeadLetterTooLargeError(f"the message exceeds the dead-letter queue's limit of {max_bytes} bytes")


def _records(lease: Lease, outcome: DeadLetter, source_queue: str, overflow: dict[str, Any]) -> Iterator[str]:
    """The record, from the fullest to the smallest; each keeps the overflow attributes (values)."""
    extra = {"overflow_attributes": overflow} if overflow else {}
    full: dict[str, Any] = {
        "error_type": outcome.error_type,
        "error_message": outcome.error_message,
        "original_message_id": lease.message_id,
        "receive_count": lease.receive_count,
        "retries_exhausted": outcome.exhausted,
        "source_queue": source_queue,
        "dead_lettered_at": int(time.time() * 1000),
    }
    yield _compact(full | extra)
    yield _compact(full | {"error_message": outcome.error_message[:SHORT_ERROR_CHARS]} | extra)
    brief = {key: full[key] for key in ("error_type", "original_message_id", "receive_count", "retries_exhausted")}
    yield _compact(brief | extra)
    yield _compact({"original_message_id": lease.message_id} | extra)


def _overflow_of(record: dict[str, Any] | None) -> dict[str, Any]:
    """The overflow attributes kept in an earlier dead-letter record, if it has any that look right."""
    try:
        found = json.loads(record["StringValue"])["overflow_attributes"] if record else {}
    except (ValueError, KeyError, TypeError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(k): v for k, v in found.items() if isinstance(v, dict) and "DataType" in v}


def _compact(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


def _clean(value: dict[str, Any]) -> MessageAttributeValueTypeDef:
    """A received attribute as SendMessage takes it (drops the list fields SQS does not use)."""
    out: dict[str, Any] = {"DataType": value["DataType"]}
    for key in ("StringValue", "BinaryValue"):
        if key in value:
            out[key] = value[key]
    return out  # type: ignore[return-value]


def _as_json(value: MessageAttributeValueTypeDef) -> dict[str, str]:
    """An attribute as JSON, nothing lost: binary values as base64."""
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        return {"DataType": value["DataType"], "BinaryValue": base64.b64encode(data).decode()}
    return {"DataType": value["DataType"], "StringValue": str(value.get("StringValue", ""))}
