"""The ack decision, a batch's decisions (admission, order of settling, released behind a failure) and
the backoff schedules."""

from __future__ import annotations

import pytest

from conveyor import Reject, Retry
from conveyor.idempotency import Claim
from conveyor.message import InvalidJsonError, Message, PermanentError
from conveyor.processor.engine.backoff import poll_backoff, retry_delay
from conveyor.processor.engine.outcome import (
    Ack,
    DeadLetter,
    Defer,
    Duplicate,
    NotRun,
    Outcome,
    RetryAfter,
    RetryPolicy,
    admission,
    comes_back_in,
    decide,
    decided_from,
    goes_back,
    released_behind,
    settle_order,
)

POLICY = RetryPolicy(base_seconds=1, max_seconds=300, max_receive_count=5, dead_letter_queue=True)


def test_success_is_ack() -> None:
    assert decide(None, 1, POLICY) == Ack()


@pytest.mark.parametrize("error", [Reject("bad order"), InvalidJsonError("nope"), PermanentError("x")])
def test_permanent_errors_dead_letter_at_once(error: Exception) -> None:
    outcome = decide(error, 1, POLICY)
    assert isinstance(outcome, DeadLetter)
    assert not outcome.exhausted


def test_retry_after_is_honoured_and_clamped() -> None:
    assert isinstance(short := decide(Retry(after=7.4), 1, POLICY), RetryAfter)
    assert short.seconds == 7
    assert isinstance(outcome := decide(Retry(after=99_999), 1, POLICY), RetryAfter)
    assert outcome.seconds == 43_200


def test_other_errors_back_off() -> None:
    outcome = decide(RuntimeError("db down"), 3, POLICY)
    assert isinstance(outcome, RetryAfter)
    assert 2 <= outcome.seconds <= 4  # base 1 s * 2^(3-1) = 4, equal jitter: between 2 and 4


def test_last_allowed_receive_dead_letters_with_the_error() -> None:
    outcome = decide(RuntimeError("db down"), 5, POLICY)
    assert isinstance(outcome, DeadLetter)
    assert outcome.exhausted
    assert outcome.error_type == "builtins.RuntimeError"


def test_without_a_redrive_policy_errors_keep_backing_off() -> None:
    policy = RetryPolicy(1, 300, None, dead_letter_queue=False)
    assert isinstance(decide(RuntimeError(), 50, policy), RetryAfter)


def test_without_a_dead_letter_queue_permanent_errors_are_parked_never_dead_lettered() -> None:
    policy = RetryPolicy(1, 300, 5, dead_letter_queue=False)
    error = Reject("no")
    assert decide(error, 1, policy) == RetryAfter(300, error, parked=True)
    assert not isinstance(decide(RuntimeError(), 5, policy), DeadLetter)


def test_a_failed_dead_letter_copy_is_retried_soon_or_parked_when_it_can_never_fit() -> None:
    error = Reject("no")
    assert POLICY.after_failed_copy(error, too_large=False) == RetryAfter(1, error)
    assert POLICY.after_failed_copy(error, too_large=True) == RetryAfter(300, error, parked=True)


def test_retry_schedule_doubles_with_equal_jitter_up_to_the_cap() -> None:
    low = [retry_delay(n, 1, 60, rand=lambda: 0.0) for n in range(1, 9)]
    high = [retry_delay(n, 1, 60, rand=lambda: 1.0) for n in range(1, 9)]
    assert high == [1, 2, 4, 8, 16, 32, 60, 60]
    assert low == [0, 1, 2, 4, 8, 16, 30, 30]


def test_poll_backoff_is_capped() -> None:
    assert poll_backoff(1, 20, rand=lambda: 1.0) == pytest.approx(0.2)
    assert poll_backoff(100, 20, rand=lambda: 1.0) == 20


def test_message_json_raises_permanent_error() -> None:
    with pytest.raises(PermanentError):
        Message(message_id="m", body="not json").json()
    assert Message(message_id="m", body='{"a":1}').json() == {"a": 1}


def test_the_claims_decide_duplicates_and_deferrals_before_the_handler() -> None:
    claims = [("", Claim.CLAIMED, 1), ("", Claim.COMPLETED, 1), ("", Claim.IN_PROGRESS, 1), ("", None, 1)]
    admitted = admission(claims, POLICY, 30, in_order=False)
    assert admitted.decided[:2] == (None, Duplicate())
    assert isinstance(admitted.decided[2], Defer)
    assert admitted.decided[2].seconds >= 15  # at least a visibility timeout, with equal jitter
    assert [admitted.runs(i) for i in range(4)] == [True, False, False, True]
    assert admitted.behind == frozenset()


def test_in_order_a_deferred_message_holds_back_the_later_ones_of_its_group_only() -> None:
    claims = [("a", Claim.CLAIMED, 1), ("a", Claim.IN_PROGRESS, 1), ("b", Claim.CLAIMED, 1), ("a", Claim.CLAIMED, 1)]
    admitted = admission(claims, POLICY, 30, in_order=True)
    assert admitted.behind == frozenset({3})
    assert [admitted.runs(i) for i in range(4)] == [True, False, True, False]
    # without an order to keep, the same batch holds nothing back
    assert admission(claims, POLICY, 30, in_order=False).behind == frozenset()


def test_dead_letters_are_settled_last_unless_the_order_must_be_kept() -> None:
    error = Reject("no")
    outcomes: list[Outcome | None] = [
        DeadLetter(error, exhausted=False),
        Ack(),
        RetryAfter(1, error),
        DeadLetter(error, exhausted=True),
    ]
    assert settle_order(outcomes, in_order=False) == [1, 2, 0, 3]
    assert settle_order(outcomes, in_order=True) == [0, 1, 2, 3]


def test_a_message_is_released_behind_when_it_did_not_run_or_its_group_stopped() -> None:
    assert released_behind(None, group_stopped=False)
    assert released_behind(Ack(), group_stopped=True)
    assert not released_behind(Ack(), group_stopped=False)


def test_a_message_left_to_its_timeout_comes_back_a_second_after_its_visibility_ends() -> None:
    assert comes_back_in(10.2, 5.0) == 7
    assert comes_back_in(5.0, 9.0) == 1


def test_a_message_the_handler_says_it_did_not_run_is_released_not_decided() -> None:
    policy = RetryPolicy(base_seconds=1, max_seconds=10, max_receive_count=3, dead_letter_queue=True)
    assert decided_from(NotRun(), receive_count=3, policy=policy) is None  # not even on its last receive
    assert decided_from(None, receive_count=1, policy=policy) == Ack()


def test_what_goes_back_holds_a_fifo_group_and_what_ends_does_not() -> None:
    policy = RetryPolicy(base_seconds=1, max_seconds=10, max_receive_count=3, dead_letter_queue=True)
    assert goes_back(RuntimeError(), receive_count=1, policy=policy)
    assert not goes_back(RuntimeError(), receive_count=3, policy=policy)  # its last receive: dead-lettered
    assert not goes_back(Reject("no"), receive_count=1, policy=policy)
    assert not goes_back(None, receive_count=1, policy=policy)
    assert not goes_back(NotRun(), receive_count=1, policy=policy)
    parked = RetryPolicy(base_seconds=1, max_seconds=10, max_receive_count=3, dead_letter_queue=False)
    assert goes_back(Reject("no"), receive_count=1, policy=parked)  # no DLQ: parked on the queue
