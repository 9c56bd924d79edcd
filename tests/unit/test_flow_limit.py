"""Adaptive concurrency's arithmetic (AIMD), on a clock the test moves."""

from __future__ import annotations

from conveyor.processor.engine.flow.limit import AdaptiveLimit


def steady(
    limit: AdaptiveLimit, start: float, seconds: int, *, latency: float = 0.1, running: int | None = None
) -> float:
    """Ten successes a second at ``latency`` with the limit in use; returns the clock after."""
    now = start
    for _ in range(seconds * 10):
        now += 0.1
        limit.succeeded(now - latency, now, running or limit.current)
    return now


def test_it_starts_at_the_most_and_a_throttle_halves_it() -> None:
    limit = AdaptiveLimit(50, now=0.0)
    assert limit.current == 50
    assert limit.throttled(started=0.5, now=0.6)
    assert limit.current == 25


def test_throttles_of_calls_begun_before_the_decrease_cut_it_once() -> None:
    limit = AdaptiveLimit(40, now=0.0)
    limit.throttled(started=0.50, now=0.60)
    for started in (0.51, 0.55, 0.59):  # the same round: they saw the old limit
        assert not limit.throttled(started=started, now=0.61)
    assert limit.current == 20
    assert limit.throttled(started=0.62, now=0.70)  # a call of the new round
    assert limit.current == 10


def test_it_never_goes_below_one() -> None:
    limit = AdaptiveLimit(3, now=0.0)
    for round_ in range(10):
        limit.throttled(started=round_, now=round_ + 0.5)
    assert limit.current == 1


def test_it_grows_by_one_a_second_while_calls_succeed_and_the_limit_is_used() -> None:
    limit = AdaptiveLimit(10, now=0.0)
    limit.throttled(started=0.0, now=0.05)
    assert limit.current == 5
    steady(limit, 0.05, 4)
    assert limit.current in (8, 9)  # one a second (the fourth window may not have closed yet)
    steady(limit, 5.0, 20)
    assert limit.current == 10  # and never above the most


def test_a_limit_nobody_reaches_does_not_grow() -> None:
    limit = AdaptiveLimit(20, now=0.0)
    limit.throttled(started=0.0, now=0.05)  # 10
    steady(limit, 0.05, 5, running=2)  # 2 running of 10 allowed: under half
    assert limit.current == 10


def test_rising_latency_shrinks_it_by_a_tenth() -> None:
    limit = AdaptiveLimit(50, now=0.0, tolerance=2.0)
    now = steady(limit, 0.0, 3, latency=0.1)
    assert limit.current == 50
    steady(limit, now, 2, latency=0.5)  # five times the baseline
    assert limit.current == 45


def test_a_quiet_stretch_closes_its_windows_without_changing_the_limit() -> None:
    limit = AdaptiveLimit(8, now=0.0)
    limit.throttled(started=0.0, now=0.1)
    assert not limit.tick(100.0)
    assert limit.current == 4
