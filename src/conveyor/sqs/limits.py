"""SQS rules, enforced here because local emulators do not enforce them the way AWS does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 1_048_576  # SendMessageBatch total payload
MAX_MESSAGE_BYTES = 1_048_576  # the ceiling; a queue's MaximumMessageSize may be lower
MAX_ATTRIBUTES = 10
MAX_ATTRIBUTE_NAME_CHARS = 256
MAX_DELAY_SECONDS = 900
MAX_VISIBILITY_SECONDS = 43_200  # also the cap on total time in flight since the first receive
MAX_WAIT_SECONDS = 20
MAX_DEDUP_ID_CHARS = 128
MAX_BATCH_ID_CHARS = 80
# Number attributes: 0, or a magnitude from 10^-128 to 10^126, with at most 38 digits of precision.
MIN_NUMBER_MAGNITUDE = Decimal("1e-128")
MAX_NUMBER_MAGNITUDE = Decimal("1e126")
MAX_NUMBER_DIGITS = 38

# Characters SQS accepts in bodies and string attribute values:
# #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF
_REFUSED_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Every pattern below is applied with fullmatch: with re.match, "$" also matches before a final
# newline, so "tenant\n" would pass as an attribute name.
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# A batch entry's Id, for pydantic's `pattern=` (Rust regex: "$" is the end of the text, no newline)
# and the OpenAPI document (ECMAScript: the same).
BATCH_ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{MAX_BATCH_ID_CHARS}}}$"
_DEDUP_ID = re.compile(r"[\x21-\x7e]{1,128}")  # alphanumeric and punctuation


def first_refused_char(text: str) -> int | None:
    """Index of the first character SQS refuses in ``text``, or None if all are allowed."""
    found = _REFUSED_CHAR.search(text)
    return found.start() if found else None


def attribute_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid SQS message attribute name, or None when it is."""
    if not name or len(name) > MAX_ATTRIBUTE_NAME_CHARS:
        return f"must be 1 to {MAX_ATTRIBUTE_NAME_CHARS} characters"
    if not _ATTRIBUTE_NAME.fullmatch(name):
        return "may contain only A-Z, a-z, 0-9, underscore, hyphen and period"
    if name.startswith(".") or name.endswith(".") or ".." in name:
        return "must not start or end with a period or contain two periods in a row"
    if name.lower().startswith(("aws.", "amazon.")):
        return "must not start with AWS. or Amazon."
    return None


def is_valid_dedup_id(value: str) -> bool:
    """MessageDeduplicationId / MessageGroupId: 1 to 128 printable ASCII characters."""
    return bool(_DEDUP_ID.fullmatch(value))


def attribute_bytes(attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes SQS counts for message attributes: each name, data type and value, UTF-8."""
    total = 0
    for name, attribute in attributes.items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        raw = value if isinstance(value, bytes) else str(value).encode()
        total += len(name.encode()) + len(str(attribute["DataType"]).encode()) + len(raw)
    return total


def message_bytes(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """The size SQS compares with MaximumMessageSize: body plus attributes, exactly."""
    # An ASCII string's length is its UTF-8 size (and str.isascii is a flag lookup): no copy of a large body.
    return (len(body) if body.isascii() else len(body.encode())) + attribute_bytes(attributes)
