"""The ack decision, made in one place: from the handler's result or exception, from the idempotency
claim, from how the dead-letter copy went, and for a batch the order of settling and the messages
released behind a failure of their FIFO group. The dispatcher only carries out what is decided here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from conveyor.idempotency import Claim
from conveyor.message import PermanentError, Retry, Throttle, is_delay
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine.backoff import retry_delay
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
OUTCOME_NAMES: dict[type, str] = {
    Ack: "ack",
    RetryAfter: "retry",
    DeadLetter: "dead_letter",
    Duplicate: "duplicate",
    Defer: "defer",
}  # fmt: skip  (as the traces name them)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    max_receive_count: int | None  # from the queue's redrive policy; None: SQS never moves it
    dead_letter_queue: bool  # a DLQ to copy to: without one nothing is ever deleted unprocessed

    @classmethod
    def of(cls, config: EngineConfig) -> RetryPolicy:
        """The engine's policy: its retry settings and its queue's redrive policy and DLQ."""
        return cls(
            config.retry_base_seconds, config.retry_max_seconds, config.max_receive_count,
            dead_letter_queue=config.dlq_url is not None,
        )  # fmt: skip

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


# --- a batch's decisions beyond each message's own ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class Admission:
    """What a batch's idempotency claims decided before the handler, by position in the batch:
    ``decided`` an outcome without the handler (a duplicate, a deferral) or None (the handler runs
    it); ``behind`` the FIFO messages after a deferred one of their group: they must not run before it
    (those before it do), and go back with it."""

    decided: tuple[Outcome | None, ...]
    behind: frozenset[int]

    def runs(self, position: int) -> bool:
        return self.decided[position] is None and position not in self.behind


def admission(
    claims: Sequence[tuple[str, Claim | None, int]], policy: RetryPolicy, visibility: float, *, in_order: bool
) -> Admission:
    """``claims``: each message's (group, claim, receive count), in batch order. ``in_order`` (FIFO):
    a deferred message holds back the later ones of its group."""
    decided: list[Outcome | None] = []
    behind: set[int] = set()
    deferred: set[str] = set()  # groups with a deferred message so far, in batch order
    for position, (group, claim, receive_count) in enumerate(claims):
        if in_order and group in deferred:
            decided.append(None)
            behind.add(position)
            continue
        outcome = before_handler(claim, receive_count, policy, visibility)
        decided.append(outcome)
        if in_order and isinstance(outcome, Defer):
            deferred.add(group)
    return Admission(tuple(decided), frozenset(behind))


def settle_order(outcomes: Sequence[Outcome | None], *, in_order: bool) -> list[int]:
    """The positions in the order their messages are settled. On a standard queue the deletes and
    retries go first and the dead-letter copies (an SQS call each, awaited) last, so that a stop
    during a copy never hands back messages whose handler succeeded; otherwise the batch's order. On
    a FIFO queue (``in_order``) the batch's order: a message going back stops its group."""
    positions = list(range(len(outcomes)))
    if not in_order:
        positions.sort(key=lambda i: isinstance(outcomes[i], DeadLetter))  # stable: otherwise in order
    return positions


class NotRun(Exception):  # noqa: N818 - what happened to the message
    """What the app's router answers, in a FIFO batch, for a message it did not run (behind a message
    of its group that goes back to the queue): released with its group, decided from nothing."""


def goes_back(error: BaseException | None, receive_count: int, policy: RetryPolicy) -> bool:
    """The message goes back to the queue after this error (a retry, a deferral, a park), rather than
    done (deleted, dead-lettered): on a FIFO queue it holds its group back."""
    return (
        error is not None
        and not isinstance(error, NotRun)
        and isinstance(decide(error, receive_count, policy), RetryAfter)
    )


def decided_from(error: BaseException | None, receive_count: int, policy: RetryPolicy) -> Outcome | None:
    """A message's outcome from what the handler reported; None for one it says it did not run
    (:class:`~conveyor.message.NotRun`): it is released like one behind a deferred message."""
    return None if isinstance(error, NotRun) else decide(error, receive_count, policy)


# --- what a handler's result says about the downstream (flow control) ---------------------------------
type Verdict = Literal["success", "throttle", "failure", "neutral"]


def verdict(error: BaseException | None) -> Verdict:
    """A call's result for flow control: ``throttle`` (the downstream is saturated), ``failure`` (what
    the breaker counts: any error that would be retried, ``Retry`` included), ``neutral`` (the handler
    judged the message, not the downstream: a rejection or a message not run), ``success``."""
    if error is None:
        return "success"
    if isinstance(error, Throttle):
        return "throttle"
    if isinstance(error, PermanentError | NotRun):
        return "neutral"
    return "failure"


def while_breaker_open(outcome: Outcome | None, retry_seconds: int) -> Outcome | None:
    """A message that failed while the breaker is open comes back no sooner than ``retry_seconds``: the
    probes must not spend the same messages' receives one after another during an outage."""
    if isinstance(outcome, RetryAfter) and not outcome.parked and not isinstance(outcome.error, Throttle):
        return RetryAfter(max(outcome.seconds, retry_seconds), outcome.error)
    return outcome


def released_behind(outcome: Outcome | None, *, group_stopped: bool) -> bool:
    """Released with its group instead of settled: a message that did not run (behind a deferred one
    of its group), or one after a message of its group that goes back to the queue (FIFO: the group is
    delivered again from the failed one, what Lambda does with FIFO batches). Never decided from the
    handler's errors."""
    return outcome is None or group_stopped


def comes_back_in(visible_until: float, now: float) -> int:
    """Seconds until a message left to its visibility timeout is visible again (and a second)."""
    return max(0, math.ceil(visible_until - now)) + 1
