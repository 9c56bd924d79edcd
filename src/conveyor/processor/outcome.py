"""The ack decision, made in one place from the handler's result or exception."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from conveyor.message import PermanentError, Retry, is_delay
from conveyor.processor.backoff import retry_delay
from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS

MAX_ERROR_MESSAGE_CHARS = 1024
log = structlog.get_logger("conveyor.processor")


@dataclass(frozen=True, slots=True)
class Ack:
    """Success: delete the message."""


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Make the message visible again after ``seconds`` (a visibility change, not a new message,
    so the receive count keeps growing and the redrive policy still applies)."""

    seconds: int
    error: BaseException


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Send to the dead-letter queue with the error recorded, then delete."""

    error: BaseException
    exhausted: bool  # True: a retryable error on the last receive the redrive policy allows

    @property
    def error_type(self) -> str:
        return f"{type(self.error).__module__}.{type(self.error).__qualname__}"

    @property
    def error_message(self) -> str:
        return str(self.error)[:MAX_ERROR_MESSAGE_CHARS]


type Outcome = Ack | RetryAfter | DeadLetter


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    max_receive_count: int | None  # from the queue's redrive policy; None: no dead-letter queue


def decide(error: BaseException | None, receive_count: int, policy: RetryPolicy) -> Outcome:
    """Success -> Ack; Reject/permanent -> DeadLetter; Retry(after) -> RetryAfter(after); any
    other error -> RetryAfter(backoff). A message on its last allowed receive is dead-lettered by
    us, with its error, rather than silently by the redrive policy on the next receive.

    Never raises: a decision that fails (a ``Retry`` whose ``after`` was changed to NaN after it was
    made, say) is a retry with backoff, never a crash of the engine."""
    try:
        return _decide(error, receive_count, policy)
    except Exception as exc:  # noqa: BLE001 - the decision must not take the engine down
        log.error("decision_failed", error=repr(exc)[:200])
        return RetryAfter(int(policy.max_seconds), error or exc)


def _decide(error: BaseException | None, receive_count: int, policy: RetryPolicy) -> Outcome:
    if error is None:
        return Ack()
    if isinstance(error, PermanentError):
        return DeadLetter(error, exhausted=False)
    if policy.max_receive_count is not None and receive_count >= policy.max_receive_count:
        return DeadLetter(error, exhausted=True)
    if isinstance(error, Retry) and is_delay(error.after):
        return RetryAfter(round(min(error.after, MAX_VISIBILITY_SECONDS)), error)
    return RetryAfter(retry_delay(receive_count, policy.base_seconds, policy.max_seconds), error)
