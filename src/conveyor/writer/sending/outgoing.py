"""Turn a validated request into exactly what SendMessageBatch gets, enforcing SQS's rules here:
allowed characters, attribute names and count, exact byte size against the queue's limit, FIFO rules.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from conveyor import metadata
from conveyor.contracts import App
from conveyor.sqs import limits
from conveyor.sqs.queues import QueueConfig
from conveyor.writer.api.problems import EntryProblem, invalid_message
from conveyor.writer.api.request_meta import RequestMeta
from conveyor.writer.api.schemas import AttributeValue, MessageIn
from conveyor.writer.sending.fifo_ids import fifo_ids
from conveyor.writer.sending.offload_rule import OffloadRule
from conveyor.writer.sending.typed import checked_type

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message ready for SQS, with its exact size."""

    body: str
    attributes: dict[str, MessageAttributeValueTypeDef]
    size: int
    delay_seconds: int | None = None
    group_id: str | None = None
    deduplication_id: str | None = None
    offload: bool = False  # over the threshold: its body goes to S3 and a pointer to SQS (payloads/offload.py)

    @property
    def traceparent(self) -> str | None:
        """The trace context it carries (its send span's, with tracing on)."""
        attribute = self.attributes.get(metadata.TRACEPARENT)
        return attribute.get("StringValue") if attribute else None

    @property
    def request_id(self) -> str | None:
        """The request it came with (for the log)."""
        attribute = self.attributes.get(metadata.REQUEST_ID)
        return attribute.get("StringValue") if attribute else None

    def entry(self) -> SendMessageBatchRequestEntryTypeDef:
        """The SendMessageBatch entry, without its ``Id`` (assigned per call)."""
        entry: SendMessageBatchRequestEntryTypeDef = {  # type: ignore[typeddict-item]  # Id added per call
            "MessageBody": self.body,
            "MessageAttributes": self.attributes,
        }
        if self.delay_seconds is not None:
            entry["DelaySeconds"] = self.delay_seconds
        if self.group_id is not None:
            entry["MessageGroupId"] = self.group_id
        if self.deduplication_id is not None:
            entry["MessageDeduplicationId"] = self.deduplication_id
        return entry


# json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False), without making an
# encoder per message
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def serialise_body(body: object) -> str:
    try:
        text = _COMPACT.encode(body)
    except ValueError as exc:
        raise invalid_message("body", "numbers must be finite (no NaN or Infinity)") from exc
    _check_chars("body", text)
    return text


def _check_chars(field: str, text: str) -> None:
    index = limits.first_refused_char(text)
    if index is not None:
        code = ord(text[index])
        raise invalid_message(field, f"character U+{code:04X} at {index} is not allowed by SQS")


def _number(field: str, value: int | float) -> str:
    """The text SQS gets for a Number attribute: 0, or a magnitude from 1e-128 to 1e126, compared as
    written (the float's shortest repr, which is what SQS parses), with at most 38 digits."""
    if isinstance(value, int) and abs(value) > limits.MAX_NUMBER_MAGNITUDE:  # before str() of a huge int
        raise invalid_message(field, "numbers must be 0 or between 1e-128 and 1e126 in magnitude")
    text = str(value) if isinstance(value, int) else repr(value)
    magnitude = abs(Decimal(text))
    if magnitude and not limits.MIN_NUMBER_MAGNITUDE <= magnitude <= limits.MAX_NUMBER_MAGNITUDE:
        raise invalid_message(field, "numbers must be 0 or between 1e-128 and 1e126 in magnitude")
    if sum(ch.isdigit() for ch in text.lower().split("e")[0]) > limits.MAX_NUMBER_DIGITS:
        raise invalid_message(field, f"numbers may have at most {limits.MAX_NUMBER_DIGITS} digits")
    return text


def _user_attribute(name: str, value: AttributeValue) -> MessageAttributeValueTypeDef:
    field = f"attributes.{name}"
    problem = limits.attribute_name_problem(name)
    if problem:
        raise invalid_message(field, f"attribute name {problem}")
    if metadata.is_reserved(name):
        raise invalid_message(field, metadata.RESERVED_TEXT)
    if isinstance(value, str):
        if not value:
            raise invalid_message(field, "string values must not be empty")
        _check_chars(field, value)
        return {"DataType": "String", "StringValue": value}
    return {"DataType": "Number", "StringValue": _number(field, value)}


def _meta_attributes(meta: RequestMeta) -> dict[str, MessageAttributeValueTypeDef]:
    found = {
        metadata.REQUEST_ID: meta.request_id,
        metadata.CONTENT_TYPE: meta.content_type,
        metadata.TRACEPARENT: meta.traceparent,
        metadata.IDEMPOTENCY_KEY: meta.idempotency_key,
    }
    return {k: {"DataType": "String", "StringValue": v} for k, v in found.items() if v}


def _attributes(
    message: MessageIn, meta: RequestMeta, type_name: str | None
) -> dict[str, MessageAttributeValueTypeDef]:
    own = _meta_attributes(meta)
    if type_name is not None:
        own[metadata.TYPE] = {"DataType": "String", "StringValue": type_name}
    room = limits.MAX_ATTRIBUTES - len(own)
    if len(message.attributes) > room:
        raise invalid_message(
            "attributes",
            f"at most {room} attributes with this request's metadata (SQS allows 10 in all)",
        )
    user = {name: _user_attribute(name, v) for name, v in message.attributes.items()}
    return own | user


def _check_ids(message: MessageIn) -> None:
    for field in ("group_id", "deduplication_id"):
        value = getattr(message, field)
        if value is not None and not limits.is_valid_dedup_id(value):
            raise invalid_message(field, "1 to 128 printable ASCII characters without spaces")


def build_outgoing(
    message: MessageIn,
    meta: RequestMeta,
    queue: QueueConfig,
    contracts: App | None = None,
    offload: OffloadRule | None = None,
) -> Outgoing:
    """Validate ``message`` against SQS's rules, this queue and (with one) the user's app; raise
    :class:`EntryProblem`. With an ``offload`` rule (a payload bucket), a message over its threshold
    is marked to go through S3 instead of being refused."""
    body = serialise_body(message.body)
    attributes = _attributes(message, meta, message.type)
    _check_ids(message)
    group_id, dedup_id = fifo_ids(message, meta, queue, body)
    size = limits.message_bytes(body, attributes)
    limit = queue.max_message_bytes
    offloaded = offload is not None and size > offload.threshold(limit)
    if offloaded:
        offload.check_pointer_fits(attributes, limit)  # type: ignore[union-attr]  # (offloaded: not None)
        if queue.is_fifo and dedup_id is None:
            # SQS's own content-based deduplication would hash the pointer (a new key each time), never
            # the payload: the id SQS would derive from the payload is sent instead.
            dedup_id = hashlib.sha256(body.encode()).hexdigest()
    elif size > limit:
        raise EntryProblem(
            413,
            "Message too large",
            f"body and attributes are {size} bytes; this queue takes at most {limit}",
            field="body",
        )
    checked_type(contracts, message.type, body)  # last: the cheap refusals first, before the model's CPU
    return Outgoing(body, attributes, size, message.delay_seconds, group_id, dedup_id, offloaded)
