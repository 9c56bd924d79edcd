"""A dead-lettered message as the operator sees it: the ``conveyor.dead_letter`` record, the filters
of `conveyor dlq redrive`, and the attributes a redriven message carries.

Messages the processor dead-lettered carry the record (JSON: ``error_type`` (qualified, e.g.
``builtins.ValueError``), ``error_message``, ``original_message_id``, ``receive_count``,
``retries_exhausted``, ``source_queue``, ``dead_lettered_at`` in ms). Messages SQS's own redrive
policy moved have none: they are shown with their ``ApproximateReceiveCount`` and ``SentTimestamp``
(the original send: SQS keeps it when it moves a message, so it says nothing of when the message
arrived here, and ``--older-than`` leaves such messages out).

A client-side redrive sends the body and the user's attributes unchanged; the record moves into
``conveyor.redrive_history`` (a JSON list, oldest first, each record with ``redriven_at``), so a
handler can tell a redriven message and the operator sees its story if it fails again. The history
keeps at most :data:`MAX_HISTORY` records and drops the oldest when the message would not fit the
destination's ``MaximumMessageSize``; it never takes an attribute slot the user's attributes need.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor import metadata
from conveyor.payloads.pointer import Pointer, pointer_or_none
from conveyor.sqs import limits

MAX_HISTORY = 5
CONVEYOR_OWN = frozenset({metadata.DEAD_LETTER, metadata.REDRIVE_HISTORY})


@dataclass(frozen=True, slots=True)
class DeadLettered:
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, Any]  # SQS MessageAttributes as received
    system: dict[str, str]  # SQS system attributes as received
    record: dict[str, Any] | None  # None: moved here by SQS's redrive policy (or by hand)

    @classmethod
    def from_sqs(cls, raw: Mapping[str, Any]) -> DeadLettered:
        attributes = dict(raw.get("MessageAttributes", {}))
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            attributes=attributes,
            system=dict(raw.get("Attributes", {})),
            record=_record_of(attributes),
        )

    @property
    def pointer(self) -> Pointer | None:
        """Where its payload is, when the body is an S3 pointer (the object stays while it is here)."""
        return pointer_or_none(self.body, self.attributes)

    @property
    def error_type(self) -> str | None:
        value = (self.record or {}).get("error_type")
        return value if isinstance(value, str) else None

    @property
    def original_message_id(self) -> str | None:
        """The id of the message the processor dead-lettered this copy of (from the record)."""
        value = (self.record or {}).get("original_message_id")
        return value if isinstance(value, str) else None

    @property
    def dead_lettered_at_ms(self) -> int | None:
        """The time to show: when it was dead-lettered, from the record, else when SQS says it was sent."""
        at = (self.record or {}).get("dead_lettered_at")
        if isinstance(at, int):
            return at
        sent = self.system.get("SentTimestamp")
        return int(sent) if sent and sent.isdigit() else None

    @property
    def arrived_at_ms(self) -> int | None:
        """When it reached this DLQ, where that is known: the record's time when the processor sent
        it here. None for a message SQS's redrive policy moved: SQS keeps its SentTimestamp and
        ApproximateFirstReceiveTimestamp from the source queue and records no time of the move (so
        both can be hours before it arrived), and a record it carries (DeadLetterQueueSourceArn says
        SQS moved it) is from an earlier dead-lettering."""
        if self.system.get("DeadLetterQueueSourceArn"):
            return None
        at = (self.record or {}).get("dead_lettered_at")
        return at if isinstance(at, int) and not isinstance(at, bool) else None

    @property
    def source_queue(self) -> str | None:
        """The queue it came from: a URL from the record, or the ARN SQS's redrive recorded."""
        source = (self.record or {}).get("source_queue")
        if isinstance(source, str) and source:
            return source
        return self.system.get("DeadLetterQueueSourceArn")

    @property
    def receive_count(self) -> int:
        """Receives in the dead-letter queue (peeking counts too)."""
        return int(self.system.get("ApproximateReceiveCount", "0"))

    @property
    def overflow_attributes(self) -> dict[str, Any]:
        """The user's attributes the processor kept inside the record, for lack of an attribute slot
        (a message that had ten): only a client-side redrive puts them back."""
        return _overflow_of(self.record)

    def user_attributes(self) -> dict[str, Any]:
        return {name: _clean(value) for name, value in self.attributes.items() if name not in CONVEYOR_OWN}

    def summary(self) -> str:
        """``builtins.ValueError: bad amount``, or what is known without a record."""
        if self.record is None:
            return "(no conveyor.dead_letter record: moved by SQS's redrive policy)"
        message = str(self.record.get("error_message", ""))
        return f"{self.error_type or 'unknown error'}: {message}" if message else self.error_type or "unknown error"


def _record_of(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    text = attributes.get(metadata.DEAD_LETTER, {}).get("StringValue")
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}
    return value if isinstance(value, dict) else {"unreadable": text[:200]}


def _clean(value: Mapping[str, Any]) -> dict[str, Any]:
    """A received attribute as SendMessage takes it."""
    out: dict[str, Any] = {"DataType": value["DataType"]}
    for key in ("StringValue", "BinaryValue"):
        if key in value:
            out[key] = value[key]
    return out


def error_type_matches(recorded: str | None, wanted: str) -> bool:
    """``ValueError`` and ``builtins.ValueError`` both match ``builtins.ValueError``."""
    return recorded is not None and (recorded == wanted or recorded.endswith("." + wanted))


@dataclass(frozen=True, slots=True)
class Filter:
    error_types: tuple[str, ...] = ()
    older_than: float | None = None  # seconds since it reached the DLQ (DeadLettered.arrived_at_ms)
    message_ids: frozenset[str] = frozenset()  # only these (the console's selection); empty: any

    @property
    def empty(self) -> bool:
        return not self.error_types and self.older_than is None and not self.message_ids

    def matches(self, message: DeadLettered, now_ms: int) -> bool:
        if self.message_ids and message.message_id not in self.message_ids:
            return False
        if not self._type_matches(message):
            return False
        if self.older_than is not None:
            at = message.arrived_at_ms
            if at is None:  # it may have arrived a moment ago: only "0 s ago" is sure
                return self.older_than <= 0
            return now_ms - at >= self.older_than * 1000
        return True

    def age_unknown(self, message: DeadLettered) -> bool:
        """It is left out only because when it reached the DLQ is not known."""
        return bool(self.older_than) and message.arrived_at_ms is None and self._type_matches(message)

    def _type_matches(self, message: DeadLettered) -> bool:
        return not self.error_types or any(error_type_matches(message.error_type, t) for t in self.error_types)


def redriven_attributes(message: DeadLettered, now_ms: int, max_bytes: int) -> dict[str, Any]:
    """The user's attributes unchanged (with those that did not fit beside the dead-letter record,
    kept inside it as ``overflow_attributes``, put back), plus the redrive history when it fits (see
    the module doc)."""
    attributes = message.user_attributes() | message.overflow_attributes
    history = _history_of(message.attributes)
    if message.record is not None:
        record = {k: v for k, v in message.record.items() if k != "overflow_attributes"}
        history.append(record | {"redriven_at": now_ms})
    history = history[-MAX_HISTORY:]
    if len(attributes) >= limits.MAX_ATTRIBUTES:
        return attributes
    while history:
        text = json.dumps(history, ensure_ascii=True, separators=(",", ":"))
        candidate = attributes | {metadata.REDRIVE_HISTORY: {"DataType": "String", "StringValue": text}}
        if limits.message_bytes(message.body, candidate) <= max_bytes:
            return candidate
        history = history[1:]
    return attributes


def _overflow_of(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The user's attributes the processor kept inside its record (binary values were base64)."""
    found = (record or {}).get("overflow_attributes")
    restored: dict[str, Any] = {}
    for name, value in found.items() if isinstance(found, dict) else ():
        if not isinstance(value, dict) or not isinstance(value.get("DataType"), str):
            continue
        if "BinaryValue" in value:
            try:
                restored[name] = {"DataType": value["DataType"], "BinaryValue": base64.b64decode(value["BinaryValue"])}
            except (ValueError, TypeError):
                continue
        elif isinstance(value.get("StringValue"), str):
            restored[name] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
    return restored


def _history_of(attributes: Mapping[str, Any]) -> list[Any]:
    text = attributes.get(metadata.REDRIVE_HISTORY, {}).get("StringValue")
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def exported(message: DeadLettered) -> dict[str, Any]:
    """Everything needed to send it again, as one JSON-able object (binary values in base64)."""
    attributes = {}
    for name, value in message.attributes.items():
        entry = {"DataType": value["DataType"]}
        if "StringValue" in value:
            entry["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["BinaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        attributes[name] = entry
    return {
        "message_id": message.message_id,
        "body": message.body,
        "attributes": attributes,
        "system_attributes": message.system,
        "dead_letter": message.record,
        "payload": _payload_of(message.pointer),
    }


def _payload_of(pointer: Pointer | None) -> dict[str, Any] | None:
    """Where the payload is when the body is an S3 pointer (None: the body is the payload)."""
    if pointer is None:
        return None
    return {"bucket": pointer.bucket, "key": pointer.key, "size": pointer.size, "location": pointer.location}
