"""What a handler sees: :class:`Message`, and the two ways to say "not now" and "never"."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.metadata import REQUEST_ID


class PermanentError(Exception):
    """Base of errors that must never be retried: the message goes to the dead-letter queue at once.

    Subclass it (or raise :class:`Reject`) to mark your own errors permanent.
    """


class Reject(PermanentError):  # noqa: N818 - the handler API's verb, as in "reject this message"
    """Raise to dead-letter the message at once, with ``reason`` recorded on it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(Exception):  # noqa: N818 - the handler API's verb, as in "retry this message"
    """Raise to have the message delivered again after ``after`` seconds.

    ``after`` is a finite number of seconds, 0 or more (anything else raises :class:`ValueError`,
    which the processor treats like any other handler error: retried with backoff). SQS holds a
    message at most 12 hours from its receive, so a longer delay is cut to what is left of that.
    """

    def __init__(self, after: float = 0.0, reason: str = "") -> None:
        if not is_delay(after):
            raise ValueError(f"Retry(after=...) takes a finite number of seconds, 0 or more; not {after!r}")
        super().__init__(reason or f"retry after {after} s")
        self.after = after


class Throttle(Retry):
    """Raise when the downstream says it is saturated (an HTTP 429, a quota): the message comes back
    after ``after`` seconds like a :class:`Retry`, and the processor slows down. It starts fewer
    handlers at once (its adaptive concurrency shrinks) and receives no new message for ``after``
    seconds. A throttle is not a failure: it never opens the breaker.

    ``after`` is what the downstream asked for (its ``Retry-After``), or a guess: 1 s by default.
    """

    def __init__(self, after: float = 1.0, reason: str = "") -> None:
        super().__init__(after, reason or f"throttled: retry after {after} s")


def is_delay(value: object) -> bool:
    """A usable number of seconds: an int or float (not a bool), finite, not negative."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


class InvalidJsonError(Reject):
    """The body is not JSON; permanent, since it will never parse."""


@dataclass(frozen=True, slots=True)
class Message:
    """One SQS message as handed to the handler."""

    message_id: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    receive_count: int = 1
    sent_at: datetime | None = None
    group_id: str | None = None  # FIFO queues: the MessageGroupId (None on standard queues)
    deduplication_id: str | None = None  # FIFO queues: the MessageDeduplicationId
    sequence_number: str | None = None  # FIFO queues: SQS's sequence number, growing within a group
    payload_location: str | None = None  # the body was offloaded to S3: where it was fetched from (s3://bucket/key)

    @property
    def offloaded(self) -> bool:
        """The body came from S3 (the message on the queue carried a pointer to it)."""
        return self.payload_location is not None

    @property
    def request_id(self) -> str | None:
        """The writer's request id, to follow a message from the HTTP request to the handler."""
        return self.attributes.get(REQUEST_ID)

    def json(self) -> Any:
        """The body parsed as JSON; raises :class:`InvalidJsonError` (permanent) if it is not."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise InvalidJsonError(f"body is not JSON: {exc}") from exc


BATCH_MARK = "__conveyor_batch__"

type BatchFailures = Mapping[str, BaseException] | None
"""What a batch handler returns: the failed messages (message id -> the error, decided on as if a
single handler had raised it), or None when every message succeeded."""


IDEMPOTENCY_MARK = "__conveyor_idempotency__"


@dataclass(frozen=True, slots=True)
class IdempotencyOptions:
    """How a handler is deduplicated when ``CONVEYOR_IDEMPOTENCY_STORE`` is set."""

    enabled: bool = True
    key: Callable[[Message], str | int] | None = None


def idempotent[F: Callable[..., Any]](
    *, key: Callable[[Message], str | int] | None = None, enabled: bool = True
) -> Callable[[F], F]:
    """Choose how the handler is deduplicated (only with ``CONVEYOR_IDEMPOTENCY_STORE`` set, where it
    is on by default): ``key(message)`` gives the key its completion is recorded under (default: the
    writer's ``conveyor.idempotency_key`` attribute, else the SQS message id); ``enabled=False``
    turns deduplication off for this handler."""

    def mark(func: F) -> F:
        setattr(func, IDEMPOTENCY_MARK, IdempotencyOptions(enabled, key))
        return func

    return mark


def idempotency_options(func: Callable[..., Any]) -> IdempotencyOptions:
    options = getattr(func, IDEMPOTENCY_MARK, None)
    return options if isinstance(options, IdempotencyOptions) else IdempotencyOptions()


def batch_handler[F: Callable[..., Any]](func: F) -> F:
    """Mark ``func`` as a batch handler: it takes ``list[Message]`` (up to 10, as received) and
    returns :data:`BatchFailures`. Raising fails every message of the batch with that error."""
    setattr(func, BATCH_MARK, True)
    return func
