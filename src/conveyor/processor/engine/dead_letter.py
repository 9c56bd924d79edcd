"""Dead-lettering by the processor: the original body and attributes, plus what went wrong.

A message whose payload is in S3 is copied as received, its pointer and the pointer's size attribute
(which keeps its slot) included: the object stays, and the copy is readable once redriven.

The error travels in one attribute, ``conveyor.dead_letter`` (JSON: error type, error message
(truncated), original message id, receive count, source queue, time), so that it fits SQS's limit of
10 attributes beside the originals. Originals beyond room (a message that already had 10) are kept
inside that JSON, values and types intact (binary ones as base64).

The copy must fit the dead-letter queue's ``MaximumMessageSize``: a message that fits its own queue
can exceed it once the record is added. The record then shrinks, step by step (a shorter error
message, then the error type, id and counts, the error type and id, the original id alone, the
error type alone), so that a permanent failure is always dead-lettered at once with as much of its
story as fits. A message redriven before carries Conveyor's own ``conveyor.redrive_history``, which
the redrive fills up to the queue's limit: that history gives way to the record of this failure
(its oldest entries first, then all of it), never the user's body or attributes. Only a message
that fills the limit by itself (within the few dozen bytes of the smallest record) is copied without
a record: whole, as SQS's own redrive policy would move it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor import metadata
from conveyor.contracts import InvalidMessageError
from conveyor.payloads.pointer import SIZE_ATTRIBUTES
from conveyor.processor.engine.lease import Lease
from conveyor.processor.engine.outcome import DeadLetter
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
    come first: the record shrinks but never drops one; Conveyor's redrive history gives way to the
    record (oldest entries first) and never takes a slot a user's attribute needs. When no record
    fits beside the user's values, the copy is the message as received (as SQS's own redrive would
    move it)."""
    # The pointer's size attribute first: it always keeps its slot (without it the copy is no pointer).
    ordered = sorted(lease.attributes.items(), key=lambda item: item[0] not in SIZE_ATTRIBUTES)
    received = {k: _clean(v) for k, v in ordered if k != metadata.DEAD_LETTER}
    originals = {k: v for k, v in received.items() if k != metadata.REDRIVE_HISTORY}
    carried = _overflow_of(lease.attributes.get(metadata.DEAD_LETTER))  # a redriven copy failing again
    histories = list(_histories(lease.attributes.get(metadata.REDRIVE_HISTORY), beside=len(originals)))
    for record in _records(lease, outcome, source_queue):
        for history in histories:
            attributes = _with_record(originals, history, record, carried)
            if limits.message_bytes(lease.body, attributes) <= max_bytes:
                return attributes
    if not carried and limits.message_bytes(lease.body, received) <= max_bytes:
        return received
    raise DeadLetterTooLargeError(f"the message exceeds the dead-letter queue's limit of {max_bytes} bytes")


def _with_record(
    originals: Attributes, history: str | None, record: dict[str, Any], carried: dict[str, Any]
) -> Attributes:
    """The copy's attributes: the originals the slots take (beside the record, and the history if
    kept), the rest inside the record (``overflow_attributes``, values intact)."""
    own: Attributes = {}
    if history is not None:
        own[metadata.REDRIVE_HISTORY] = {"DataType": "String", "StringValue": history}
    room = limits.MAX_ATTRIBUTES - 1 - len(own)
    names = list(originals)
    kept = {name: originals[name] for name in names[:room]}
    overflow = {name: _as_json(originals[name]) for name in names[room:]} | carried
    text = _compact(record | ({"overflow_attributes": overflow} if overflow else {}))
    return kept | own | {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": text}}


def _histories(attribute: dict[str, Any] | None, beside: int) -> Iterator[str | None]:
    """The redrive history a copy may keep beside its record and ``beside`` user attributes, from
    the whole of it to none: without its oldest entries, one after another (one not a JSON list:
    whole or not at all). Only none when the user's attributes need every slot the record leaves."""
    text = attribute.get("StringValue") if attribute else None
    if isinstance(text, str) and text and beside < limits.MAX_ATTRIBUTES - 1:
        try:
            entries = json.loads(text)
        except ValueError:
            entries = None
        if isinstance(entries, list):
            for start in range(len(entries)):
                yield _compact(entries[start:])
        else:
            yield text
    yield None


def _records(lease: Lease, outcome: DeadLetter, source_queue: str) -> Iterator[dict[str, Any]]:
    """The record, from the fullest to the smallest (the overflow attributes go into each)."""
    full: dict[str, Any] = {
        "error_type": outcome.error_type,
        "error_message": outcome.error_message,
        "original_message_id": lease.message_id,
        "receive_count": lease.receive_count,
        "retries_exhausted": outcome.exhausted,
        "source_queue": source_queue,
        "dead_lettered_at": int(time.time() * 1000),
    }
    if isinstance(outcome.error, InvalidMessageError):  # field paths and pydantic's messages, no values
        full["validation_errors"] = outcome.error.errors
    yield full
    yield full | {"error_message": outcome.error_message[:SHORT_ERROR_CHARS]}
    if "validation_errors" in full:
        yield {key: value for key, value in full.items() if key != "validation_errors"}
    for fields in (
        ("error_type", "original_message_id", "receive_count", "retries_exhausted"),
        ("error_type", "original_message_id"),
        ("original_message_id",),
        ("error_type",),  # (shorter than an SQS id when the type's name is short)
    ):
        yield {key: full[key] for key in fields}


def _overflow_of(record: dict[str, Any] | None) -> dict[str, Any]:
    """The overflow attributes kept in an earlier dead-letter record, if it has any that look right."""
    try:
        found = json.loads(record["StringValue"])["overflow_attributes"] if record else {}
    except (ValueError, KeyError, TypeError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(k): v for k, v in found.items() if isinstance(v, dict) and "DataType" in v}


def _compact(record: dict[str, Any] | list[Any]) -> str:
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
