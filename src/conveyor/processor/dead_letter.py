"""Dead-lettering by the processor: the original body and attributes, plus what went wrong.

The error travels in one attribute, ``conveyor.dead_letter`` (JSON: error type, error message
(truncated), original message id, receive count, source queue), so that it fits SQS's limit of 10
attributes beside the originals; originals beyond room are folded into that JSON.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from conveyor import metadata
from conveyor.processor.lease import Lease
from conveyor.processor.outcome import DeadLetter
from conveyor.sqs import limits

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageAttributeValueTypeDef

MIN_ERROR_CHARS = 64


def _clean(value: dict[str, Any]) -> MessageAttributeValueTypeDef:
    """A received attribute as SendMessage takes it (drops the list fields SQS does not use)."""
    out: dict[str, Any] = {"DataType": value["DataType"]}
    for key in ("StringValue", "BinaryValue"):
        if key in value:
            out[key] = value[key]
    return out  # type: ignore[return-value]


def dead_letter_attributes(
    lease: Lease, outcome: DeadLetter, source_queue: str, error_chars: int = 1024
) -> dict[str, MessageAttributeValueTypeDef]:
    originals = {k: _clean(v) for k, v in lease.attributes.items() if k != metadata.DEAD_LETTER}
    room = limits.MAX_ATTRIBUTES - 1
    kept = dict(list(originals.items())[:room])
    overflow = {k: str(v.get("StringValue", "<binary>")) for k, v in list(originals.items())[room:]}
    record: dict[str, Any] = {
        "error_type": outcome.error_type,
        "error_message": outcome.error_message[:error_chars],
        "original_message_id": lease.message_id,
        "receive_count": lease.receive_count,
        "retries_exhausted": outcome.exhausted,
        "source_queue": source_queue,
        "dead_lettered_at": int(time.time() * 1000),
    }
    if overflow:
        record["overflow_attributes"] = overflow
    text = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    return kept | {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": text}}


async def send_to_dlq(
    client: SQSClient,
    dlq_url: str,
    lease: Lease,
    outcome: DeadLetter,
    *,
    source_queue: str,
    fifo: bool,
    max_bytes: int,
) -> str:
    """Send the dead-letter copy; returns its MessageId. Raises on failure (nothing is deleted)."""
    attributes = dead_letter_attributes(lease, outcome, source_queue)
    if limits.message_bytes(lease.body, attributes) > max_bytes:
        attributes = dead_letter_attributes(lease, outcome, source_queue, error_chars=MIN_ERROR_CHARS)
    extra: dict[str, Any] = {}
    if fifo:
        extra["MessageGroupId"] = lease.system.get("MessageGroupId", "dead-letter")
        extra["MessageDeduplicationId"] = lease.message_id
    response = await client.send_message(
        QueueUrl=dlq_url, MessageBody=lease.body, MessageAttributes=attributes, **extra
    )
    return response["MessageId"]
