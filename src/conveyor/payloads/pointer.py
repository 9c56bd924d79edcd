"""The extended clients' wire format, in both directions.

A message whose payload is in S3 has the body
``["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": ..., "s3Key": ...}]`` and
the Number attribute ``ExtendedPayloadSize`` (the payload's length in bytes). The Java client's legacy
default writes the class ``com.amazon.sqs.javamessaging.MessageS3Pointer`` and the attribute
``SQSLargePayloadSize``: both are read. The attribute is what marks a pointer (as in the AWS
clients): a body that looks like one without it is an ordinary body.

The extended clients also put the pointer into the receipt handles they hand their callers
(``-..s3BucketName..-<bucket>-..s3BucketName..--..s3Key..-<key>-..s3Key..-<handle>``); SQS itself
never does, but a handle of that form may reach Conveyor from a mixed fleet: :func:`sqs_receipt_handle`
gives SQS's own handle back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageAttributeValueTypeDef

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
POINTER_CLASSES = frozenset({POINTER_CLASS, LEGACY_POINTER_CLASS})
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
LEGACY_SIZE_ATTRIBUTE = "SQSLargePayloadSize"
SIZE_ATTRIBUTES = (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE)
BUCKET_MARKER = "-..s3BucketName..-"
KEY_MARKER = "-..s3Key..-"


class PointerError(ValueError):
    """A message marked as offloaded whose body is not a pointer: it will never be readable."""


@dataclass(frozen=True, slots=True)
class Pointer:
    """Where a payload is: its bucket and key, and its size as the message's attribute says."""

    bucket: str
    key: str
    size: int | None = None

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def body(self) -> str:
        """The SQS body that points here (what the AWS clients write, byte for byte)."""
        return json.dumps([POINTER_CLASS, {"s3BucketName": self.bucket, "s3Key": self.key}])


def size_attribute(size: int) -> MessageAttributeValueTypeDef:
    """The attribute that marks a pointer: the payload's length in bytes."""
    return {"DataType": "Number", "StringValue": str(size)}


def pointer_of(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> Pointer | None:
    """The pointer of a received message, or None if it is not marked as offloaded. Raises
    :class:`PointerError` when it is marked but its body is not a pointer."""
    marked = next((attributes[name] for name in SIZE_ATTRIBUTES if name in attributes), None)
    if marked is None:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if not (isinstance(parsed, list) and len(parsed) == 2 and isinstance(parsed[1], Mapping)):
        raise PointerError(f"the message has {_name_of(attributes)} but its body is not an S3 pointer")
    cls, where = parsed
    bucket, key = where.get("s3BucketName"), where.get("s3Key")
    if cls not in POINTER_CLASSES or not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise PointerError(f"the message has {_name_of(attributes)} but its body is not an S3 pointer")
    return Pointer(bucket, key, _size(marked.get("StringValue")))


def pointer_or_none(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> Pointer | None:
    """:func:`pointer_of`, with a marked body that is no pointer as None (nothing to fetch or delete)."""
    try:
        return pointer_of(body, attributes)
    except PointerError:
        return None


def _name_of(attributes: Mapping[str, Any]) -> str:
    return next(name for name in SIZE_ATTRIBUTES if name in attributes)


def _size(text: object) -> int | None:
    """The size the producer claims: a whole number of bytes, or unknown (never trusted for more)."""
    try:
        size = int(str(text))
    except ValueError:
        return None
    return size if size >= 0 else None


def sqs_receipt_handle(handle: str) -> str:
    """SQS's own receipt handle, from one an extended client embedded a pointer in (else unchanged)."""
    if not handle.startswith(BUCKET_MARKER):
        return handle
    key_end = handle.find(KEY_MARKER, handle.find(KEY_MARKER) + len(KEY_MARKER))
    return handle[key_end + len(KEY_MARKER) :] if key_end >= 0 else handle
