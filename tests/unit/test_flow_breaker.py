"""The breaker's states, on a clock the test moves, and what counts as a failure."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Reject, Retry, Throttle
from conveyor.processor.config import BreakerPolicy
from conveyor.processor.engine.flow.breaker import Breaker, State
from conveyor.processor.engine.outcome import Ack, NotRun, RetryAfter, verdict, while_breaker_open

POLICY = BreakerPolicy(min_calls=20, failure_ratio=0.5, window=10, pause=5, probes=2)


def fail(breaker: Breaker, n: int, now: float, *, failed: bool = True) -> State | None:
    state = None
    for _ in range(n):
        state = breaker.record(failed, now, now) or state
    return state


def opened(now: float = 100.0) -> Breaker:
    breaker = Breaker(POLICY)
    assert fail(breaker, 20, now) is State.OPEN
    return breaker


def test_it_opens_at_the_minimum_of_calls_with_half_of_them_failed() -> None:
    breaker = Breaker(POLICY)
    assert fail(breaker, 10, 100.0, failed=False) is None
    assert fail(breaker, 9, 100.5) is None  # 19 calls: under the minimum
    assert fail(breaker, 1, 100.6) is State.OPEN  # 20 calls, 10 failed
    assert breaker.allow(10, 100.7) == 0


def test_fewer_failures_than_the_ratio_keep_it_closed() -> None:
    breaker = Breaker(POLICY)
    for i in range(100):
        breaker.record(i % 3 == 0, 100.0 + i / 10, 100.0 + i / 10)  # a third fail
    assert breaker.state is State.CLOSED
    assert breaker.allow(10, 111.0) == 10


def test_old_calls_leave_the_window() -> None:
    breaker = Breaker(POLICY)
    fail(breaker, 15, 100.0)
    assert fail(breaker, 10, 111.0, failed=False) is None  # the 15 failures are older than 10 s
    assert breaker.state is State.CLOSED


def test_after_the_pause_it_lets_the_probes_through_and_closes_when_they_succeed() -> None:
    breaker = opened(100.0)
    assert breaker.wait(102.0) == pytest.approx(3.0)
    assert breaker.allow(10, 105.0) == 2  # half-open: the probes only
    assert breaker.state is State.HALF_OPEN
    assert breaker.allow(10, 105.0) == 0
    assert breaker.wait(105.0) == pytest.approx(5.0)  # until their results, or another pause
    assert breaker.record(False, 105.0, 105.2) is None
    assert breaker.record(False, 105.0, 105.3) is State.CLOSED
    assert breaker.allow(10, 105.4) == 10


def test_a_failed_probe_opens_it_again_for_another_pause() -> None:
    breaker = opened(100.0)
    breaker.allow(10, 105.0)
    assert breaker.record(True, 105.0, 105.1) is State.OPEN
    assert breaker.allow(10, 109.0) == 0
    assert breaker.allow(10, 110.2) == 2


def test_a_probe_receive_that_brings_nothing_closes_it() -> None:
    breaker = opened(100.0)
    granted = breaker.allow(10, 105.0)
    assert breaker.unused(granted, 105.5) is State.CLOSED  # an empty queue: nothing to protect


def test_a_probe_receive_that_brings_one_closes_when_that_one_succeeds() -> None:
    breaker = opened(100.0)
    breaker.allow(10, 105.0)
    assert breaker.unused(1, 105.5) is None
    assert breaker.record(False, 105.5, 105.6) is State.CLOSED


def test_calls_begun_before_the_breaker_opened_say_nothing_of_the_downstream_now() -> None:
    breaker = opened(100.0)
    breaker.allow(10, 105.0)
    assert breaker.record(False, 99.0, 105.1) is None  # started while closed
    assert breaker.record(True, 99.5, 105.1) is None
    assert breaker.state is State.HALF_OPEN


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, "success"),
        (Throttle(after=1), "throttle"),
        (Reject("bad"), "neutral"),
        (NotRun(), "neutral"),
        (Retry(after=3), "failure"),
        (ConnectionError("down"), "failure"),
        (asyncio.CancelledError(), "failure"),
        (KeyboardInterrupt(), "failure"),
    ],
)
def test_what_a_result_says_of_the_downstream(error: BaseException | None, expected: str) -> None:
    assert verdict(error) == expected


def test_a_failure_while_open_comes_back_no_sooner_than_the_breaker_says() -> None:
    error = ConnectionError("down")
    assert while_breaker_open(RetryAfter(2, error), 60) == RetryAfter(60, error)
    assert while_breaker_open(RetryAfter(90, error), 60) == RetryAfter(90, error)
    throttle = Throttle(after=1)
    assert while_breaker_open(RetryAfter(1, throttle), 60) == RetryAfter(1, throttle)  # as the downstream asked
    assert while_breaker_open(Ack(), 60) == Ack()
    parked = RetryAfter(300, error, parked=True)
    assert while_breaker_open(parked, 60) is parked


def test_probes_that_never_give_a_verdict_are_followed_by_new_ones_a_pause_later() -> None:
    breaker = opened(100.0)
    assert breaker.allow(10, 105.0) == 2  # say, two canaries: answered, never handled
    assert breaker.allow(10, 109.9) == 0
    assert breaker.allow(10, 110.0) == 2
    assert breaker.record(False, 110.0, 110.2) is None
    assert breaker.record(False, 110.0, 110.3) is State.CLOSED


def test_probes_slower_than_the_pause_still_close_it_when_they_succeed() -> None:
    breaker = opened(100.0)
    assert breaker.allow(10, 105.0) == 2
    assert breaker.allow(10, 110.0) == 2  # a pause without a verdict: new probes go too
    assert breaker.record(False, 105.0, 112.0) is None  # the first round's, late: they count
    assert breaker.record(False, 105.0, 112.1) is State.CLOSED


def test_a_late_probe_of_an_earlier_round_that_failed_opens_it_again() -> None:
    breaker = opened(100.0)
    breaker.allow(10, 105.0)
    breaker.allow(10, 110.0)
    assert breaker.record(True, 105.0, 112.0) is State.OPEN


def test_a_probe_receive_sqs_did_not_answer_gives_its_grants_back_without_closing() -> None:
    breaker = opened(100.0)
    granted = breaker.allow(10, 105.0)
    assert breaker.unused(granted, 105.1, answered=False) is None
    assert breaker.state is State.HALF_OPEN
    assert breaker.allow(10, 105.2) == granted  # the probes may go again
