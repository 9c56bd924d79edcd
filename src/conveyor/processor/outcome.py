"""The ack decision, made in one place: from the handler's result or exception, and from how the
dead-letter copy went. The dispatcher only carries out what is decided here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from conveyor.idempotency import Claim
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
    parked: bool = False  # a permanent error with nowhere to dead-letter it: kept out of the way, never deleted


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
        return describe(self.error, str)[:MAX_ERROR_MESSAGE_CHARS]


def describe(error: BaseException, how: Callable[[object], str] = repr) -> str:
    """``repr`` (or ``str``) of an error that may not even be able to say what it is."""
    try:
        return how(error)
    except Exception:  # noqa: BLE001 - a broken __repr__/__str__ must not lose the message
        return f"<{type(error).__qualname__} that cannot be shown>"


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Its key was completed before (a copy sent twice, a redelivery): delete it, the handler does
    not run again."""


@dataclass(frozen=True, slots=True)
class Defer:
    """A copy with its key is being handled elsewhere right now: visible again after ``seconds``."""

    seconds: int


type Outcome = Ack | RetryAfter | DeadLetter | Duplicate | Defer


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    max_receive_count: int | None  # from the queue's redrive policy; None: SQS never moves it
    dead_letter_queue: bool  # a DLQ to copy to: without one nothing is ever deleted unprocessed

    def after_failed_copy(self, error: BaseException, *, too_large: bool) -> RetryAfter:
        """The dead-letter copy failed: nothing is deleted. A copy that can never fit waits the
        longest (SQS's redrive policy will move it); any other failure is tried again soon."""
        seconds = self.max_seconds if too_large else self.base_seconds
        return RetryAfter(int(seconds), error, parked=too_large)


def before_handler(claim: Claim | None, receive_count: int, policy: RetryPolicy, visibility: float) -> Outcome | None:
    """What the idempotency claim decides before the handler runs (None: run it). A copy deferred
    because another is running waits at least a visibility timeout (the other's claim lasts that
    long, renewed while it runs), doubling with each receive: SQS counts each of them, and a long
    handler must not push its duplicates into the DLQ within a few seconds."""
    if claim is Claim.COMPLETED:
        return Duplicate()
    if claim is Claim.IN_PROGRESS:
        base = max(policy.base_seconds, visibility)
        return Defer(retry_delay(receive_count, base, max(policy.max_seconds, base)))
    return None


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
        if not policy.dead_letter_queue:
            return RetryAfter(int(policy.max_seconds), error, parked=True)
        return DeadLetter(error, exhausted=False)
    last = policy.max_receive_count is not None and receive_count >= policy.max_receive_count
    if last and policy.dead_letter_queue:
        return DeadLetter(error, exhausted=True)
    if isinstance(error, Retry) and is_delay(error.after):
        return RetryAfter(round(min(error.after, MAX_VISIBILITY_SECONDS)), error)
    return RetryAfter(retry_delay(receive_count, policy.base_seconds, policy.max_seconds), error)
