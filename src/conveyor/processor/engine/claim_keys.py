"""A message's idempotency key, and the name this process's claims go by.

The key is the handler's key function's answer (:func:`conveyor.idempotent`), else the message's
``conveyor.idempotency_key`` attribute (the writer sets it from the client's ``Idempotency-Key``),
else its SQS message id (which covers SQS's own redeliveries).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable

import structlog

from conveyor.message import Message
from conveyor.metadata import IDEMPOTENCY_KEY
from conveyor.processor.engine.lease import Lease

log = structlog.get_logger("conveyor.processor")

type KeyFunction = Callable[[Message], str | int]


def default_owner() -> str:
    """This process, as the store's claims name it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def message_key(lease: Lease, key_of: KeyFunction | None) -> str:
    """The message's key. A key the store cannot keep (not a string, empty, not encodable as UTF-8,
    such as a lone surrogate a key function read from a JSON body) falls back to the message id."""
    if key_of is None:
        attribute = lease.attributes.get(IDEMPOTENCY_KEY, {})
        candidate: object = attribute.get("StringValue") or lease.message_id
    else:
        try:
            candidate = key_of(lease.message())
        except Exception as exc:  # noqa: BLE001 - a broken key function falls back to the id
            log.warning("idempotency_key_function_failed", message_id=lease.message_id, error=type(exc).__name__)
            return lease.message_id
    key = _usable_key(candidate)
    if key is None:
        log.warning("idempotency_key_invalid", message_id=lease.message_id)
        return lease.message_id
    return key


def _usable_key(value: object) -> str | None:
    """``value`` as a store key, or None when it cannot be one."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # (ValueError past Python's 4,300 digits)
        if not isinstance(value, str) or not value:
            return None
        value.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return None
    return value
