"""A request (or batch entry) with an idempotency key, as the store knows it: its key in its client's
scope, and the fingerprint that tells a repeat of the request from another request with that key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from conveyor.sqs.queues import QueueConfig
from conveyor.writer.api.schemas import MessageIn


@dataclass(frozen=True, slots=True)
class Keyed:
    """A request (or batch entry) with an idempotency key: its scoped key and its fingerprint."""

    key: str
    fingerprint: str


def fingerprint(route: str, queue: QueueConfig, content_type: str, message: MessageIn) -> str:
    """What makes two requests with one key the same request: the route, the queue, the content
    type (it travels as an attribute) and the message as JSON with sorted keys (so whitespace and the
    order of object keys do not count). Not the request id or traceparent: each attempt has its own."""
    canonical: list[object] = [
        route, queue.arn, content_type,
        message.body, message.attributes, message.delay_seconds, message.group_id, message.deduplication_id,
    ]  # fmt: skip
    if message.type is not None:  # only then: the fingerprints stored before types existed still match
        canonical.append({"type": message.type})
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
