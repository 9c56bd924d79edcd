"""A :class:`conveyor.Message` as the processor would hand it over after the writer sent it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from conveyor import metadata
from conveyor.message import Message


def make_message(
    body: Any = None,
    *,
    type: str | None = None,
    attributes: dict[str, str | int | float] | None = None,
    receive_count: int = 1,
    message_id: str | None = None,
    group_id: str | None = None,
    deduplication_id: str | None = None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    sent_at: datetime | None = None,
) -> Message:
    """``body`` is any JSON value, serialised as the writer does (compact, UTF-8 as it is), or a
    ``str`` taken as it is (to test a body that is not JSON). The attributes are the user's plus
    those the writer sets: ``conveyor.request_id``, ``conveyor.content_type``, and ``conveyor.type``
    and ``conveyor.idempotency_key`` when given."""
    text = (
        body if isinstance(body, str) else json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    )
    own = {
        metadata.REQUEST_ID: request_id or uuid.uuid4().hex,
        metadata.CONTENT_TYPE: "application/json",
        metadata.TYPE: type,
        metadata.IDEMPOTENCY_KEY: idempotency_key,
    }
    user = {name: str(value) for name, value in (attributes or {}).items()}
    return Message(
        message_id=message_id or str(uuid.uuid4()),
        body=text,
        attributes={name: value for name, value in own.items() if value} | user,
        receive_count=receive_count,
        sent_at=sent_at or datetime.now(UTC),
        group_id=group_id,
        deduplication_id=deduplication_id or (str(uuid.uuid4()) if group_id else None),
        sequence_number="1" if group_id else None,
    )
