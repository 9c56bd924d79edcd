"""The writer's side: a message over the threshold is stored in S3 and its pointer is sent instead.

The order makes "accepted" mean what it says: the object is stored first, then the pointer is sent,
and the client hears 202 only once both S3 and SQS have it. An S3 failure is a 503 with
``Retry-After`` and nothing is sent. When SQS then refuses the pointer for good (or the writer is
stopping and never sent it), the object is removed; when the outcome is unknown (a timeout: SQS may
have the message) it is kept, since a pointer may be on the queue, and the bucket's lifecycle rule
expires it if none is.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import structlog

from conveyor.payloads.errors import PayloadStoreError
from conveyor.payloads.pointer import SIZE_ATTRIBUTE, Pointer, size_attribute
from conveyor.payloads.store import PayloadStore
from conveyor.sqs import limits
from conveyor.sqs.errors import Kind, SqsError
from conveyor.writer.api.problems import EntryProblem
from conveyor.writer.sending.offload_rule import OffloadRule
from conveyor.writer.sending.outgoing import Outgoing

log = structlog.get_logger("conveyor.writer")


class Offloader:
    """Stores payloads for the sender and removes those whose pointer SQS never took."""

    def __init__(self, store: PayloadStore, rule: OffloadRule, on_stored: Callable[[int], None]) -> None:
        self.rule = rule
        self._store = store
        self._on_stored = on_stored  # the metrics: one more offloaded message of this many bytes

    async def store(self, outgoing: Outgoing) -> tuple[Outgoing, Pointer]:
        """Store the body; returns the pointer message to send in its place, and the pointer."""
        data = outgoing.body.encode()
        pointer = Pointer(self.rule.bucket, f"{self.rule.prefix}{uuid.uuid4()}", len(data))
        try:
            await self._store.put(pointer, data)
        except PayloadStoreError as exc:
            log.error("payload_store_failed", code=exc.code, error=exc.message[:300], request_id=outgoing.request_id)
            raise EntryProblem(
                503, "Payload store unavailable", "the message could not be stored in S3; nothing was sent",
                code=exc.code, retryable=True,
            ) from exc  # fmt: skip
        del data
        self._on_stored(pointer.size or 0)
        body = pointer.body()
        attributes = {**outgoing.attributes, SIZE_ATTRIBUTE: size_attribute(pointer.size or 0)}
        size = limits.message_bytes(body, attributes)
        return dataclasses.replace(outgoing, body=body, attributes=attributes, size=size, offload=False), pointer

    async def unsent(self, pointer: Pointer, problem: EntryProblem) -> None:
        """SQS did not take the pointer: remove the object if that is certain (see the module doc)."""
        if not _certainly_unsent(problem):
            log.warning("payload_kept_send_unknown", location=pointer.location, status=problem.status)
            return
        try:
            await self._store.delete_one(pointer)
        except PayloadStoreError as exc:
            log.warning("payload_remove_failed", location=pointer.location, code=exc.code)


def _certainly_unsent(problem: EntryProblem) -> bool:
    """SQS refused the message (for its content, or the queue for good), or it was never handed to SQS."""
    cause = problem.__cause__
    return not isinstance(cause, SqsError) or cause.failure.kind in (Kind.SENDER, Kind.FATAL)
