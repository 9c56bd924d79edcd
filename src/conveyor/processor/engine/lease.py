"""A received message while this process holds it, and the registry of all of them."""

from __future__ import annotations

import base64
import enum
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from conveyor.idempotency import Claim
from conveyor.message import Message
from conveyor.payloads.pointer import SIZE_ATTRIBUTES, Pointer, sqs_receipt_handle
from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS

CAP_MARGIN_SECONDS = 5  # stay clear of the 12 h cap: SQS rejects a visibility that crosses it


class Stage(enum.Enum):
    BUFFERED = "buffered"  # received, handler not started: released at visibility 0 on shutdown
    RUNNING = "running"  # the handler runs: the heartbeat keeps it invisible
    SETTLING = "settling"  # outcome decided (delete, visibility change or dead-letter under way)
    ABANDONED = "abandoned"  # stopped waiting for a handler whose thread still runs: never released


@dataclass(slots=True)
class Lease:
    """A message received from SQS, with what is needed to extend, delete or release it."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, Any]  # SQS MessageAttributes as received
    system: dict[str, str]  # SQS system attributes (ApproximateReceiveCount, SentTimestamp, ...)
    received_at: float  # monotonic time when the receive call started (a conservative bound)
    visible_until: float  # monotonic time by which the heartbeat must have extended it
    stage: Stage = Stage.BUFFERED
    extending: int = 0  # extensions sent that SQS has not answered yet
    dedupe_key: str | None = None  # with an idempotency store: the key its handler completion is recorded under
    claim: Claim | None = None  # and what the store said about that key
    claim_lost: bool = False  # its claim ended while the handler ran, and another process took the key
    pointer: Pointer | None = None  # its body is an S3 pointer: where the payload is (set once fetched)
    payload: str | None = None  # and the payload fetched from there: what the handler sees as the body
    _view: Message | None = field(default=None, repr=False)  # built once, on first use

    @classmethod
    def from_sqs(cls, raw: Mapping[str, Any], received_at: float, visibility: float) -> Lease:
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=sqs_receipt_handle(raw["ReceiptHandle"]),
            body=raw.get("Body", ""),
            attributes=dict(raw.get("MessageAttributes", {})),
            system=dict(raw.get("Attributes", {})),
            received_at=received_at,
            visible_until=received_at + visibility,
        )

    # --- stage transitions: every change of stage is one of these ----------------------------------
    def start(self) -> None:
        """The handler is about to run: from now on the heartbeat keeps the message invisible."""
        self.stage = Stage.RUNNING

    def settle(self) -> None:
        """The outcome is decided; the heartbeat leaves it alone (a delete or release is under way)."""
        self.stage = Stage.SETTLING

    def abandon(self) -> None:
        """Shutdown stopped waiting for a handler whose thread still runs: the message must not be
        made visible (it would run twice at once); it comes back when its visibility ends."""
        self.stage = Stage.ABANDONED

    @property
    def held_by_handler(self) -> bool:
        """The heartbeat extends it: received or running, outcome not yet decided."""
        return self.stage in (Stage.BUFFERED, Stage.RUNNING)

    # --- what SQS says about it -------------------------------------------------------------------
    @property
    def receive_count(self) -> int:
        return int(self.system.get("ApproximateReceiveCount", "1"))

    @property
    def sent_at(self) -> datetime | None:
        sent = self.system.get("SentTimestamp")
        return datetime.fromtimestamp(int(sent) / 1000, tz=UTC) if sent else None

    @property
    def group_id(self) -> str | None:
        """The FIFO MessageGroupId (None on standard queues)."""
        return self.system.get("MessageGroupId")

    @property
    def group(self) -> str:
        """The FIFO group, as the buffer, the batch and the held deletes key it ("" on standard queues:
        all of its messages in one group that never orders anything)."""
        return self.group_id or ""

    def visibility_cap(self, now: float) -> int:
        """The longest visibility timeout SQS accepts for it now: 12 hours from the receive, less
        what has passed (and a margin)."""
        return max(0, int(MAX_VISIBILITY_SECONDS - CAP_MARGIN_SECONDS - (now - self.received_at)))

    def log_context(self) -> AbstractContextManager[None]:
        """Every log line about this message carries its id and the writer's request id."""
        return structlog.contextvars.bound_contextvars(message_id=self.message_id, request_id=self.message().request_id)

    def take_payload(self, pointer: Pointer, text: str) -> None:
        """Its payload was fetched from S3: the handler sees it as the body (the lease keeps the
        pointer body: a dead-letter copy carries the pointer, not the payload)."""
        self.pointer = pointer
        self.payload = text
        self._view = None

    def message(self) -> Message:
        """The handler's view: string attributes as text, binary ones as base64."""
        if self._view is None:
            self._view = self._build_message()
        return self._view

    def _build_message(self) -> Message:
        offloaded = self.pointer is not None
        return Message(
            message_id=self.message_id,
            body=self.payload if self.payload is not None else self.body,
            attributes={
                name: _attribute_text(value)
                for name, value in self.attributes.items()
                if not (offloaded and name in SIZE_ATTRIBUTES)  # (as the AWS clients hand it over)
            },
            receive_count=self.receive_count,
            sent_at=self.sent_at,
            group_id=self.group_id,
            deduplication_id=self.system.get("MessageDeduplicationId"),
            sequence_number=self.system.get("SequenceNumber"),
            payload_location=self.pointer.location if self.pointer is not None else None,
        )


def _attribute_text(value: Mapping[str, Any]) -> str:
    if "StringValue" in value:
        return str(value["StringValue"])
    binary = value.get("BinaryValue", b"")
    return base64.b64encode(binary).decode() if isinstance(binary, bytes) else str(binary)


class InFlight:
    """Every lease this process holds, by receipt handle (a message received twice is two leases).

    ``on_change`` hears the count after every change: the one owner of the in-flight gauge."""

    def __init__(self, on_change: Callable[[int], None] = lambda _: None) -> None:
        self._leases: dict[str, Lease] = {}
        self._on_change = on_change

    def add(self, lease: Lease) -> None:
        self._leases[lease.receipt_handle] = lease
        self._on_change(len(self._leases))

    def discard(self, lease: Lease) -> None:
        if self._leases.pop(lease.receipt_handle, None) is not None:
            self._on_change(len(self._leases))

    def __len__(self) -> int:
        return len(self._leases)

    def __iter__(self) -> Iterator[Lease]:
        return iter(list(self._leases.values()))
