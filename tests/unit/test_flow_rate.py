"""The rate limit's bucket: reservations in debt, refunds, the burst, and Redis out of reach."""

from __future__ import annotations

import pytest
import redis.asyncio
import redis.exceptions
import structlog.testing

from conveyor.processor.engine.flow.rate import LocalBucket, RedisBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_it_starts_empty_and_a_reservation_says_how_long_to_wait() -> None:
    clock = Clock()
    bucket = LocalBucket(20, clock)
    assert await bucket.reserve(10) == pytest.approx(0.5)
    assert await bucket.reserve(10) == pytest.approx(1.0)  # queued behind the first
    clock.now += 1.0
    assert await bucket.reserve(10) == pytest.approx(0.5)


async def test_a_burst_is_at_most_one_second_s_worth() -> None:
    clock = Clock()
    bucket = LocalBucket(20, clock)
    clock.now += 3600  # idle for an hour
    assert await bucket.reserve(20) == 0
    assert await bucket.reserve(1) == pytest.approx(1 / 20)
    assert bucket.burst == 20


async def test_what_a_receive_did_not_bring_is_given_back() -> None:
    clock = Clock()
    bucket = LocalBucket(10, clock)
    clock.now += 1.0
    assert await bucket.reserve(10) == 0
    await bucket.refund(7)  # the receive brought 3
    assert await bucket.reserve(7) == 0
    assert await bucket.reserve(1) == pytest.approx(0.1)


async def test_a_rate_below_one_still_lets_one_through() -> None:
    clock = Clock()
    bucket = LocalBucket(0.5, clock)
    assert bucket.burst == 1
    assert await bucket.reserve(1) == pytest.approx(2.0)


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LocalBucket(0)


class DownScript:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, **_: object) -> object:
        self.calls += 1
        raise redis.exceptions.ConnectionError("Connection refused")


async def test_with_redis_out_of_reach_the_limit_holds_in_the_process_and_is_counted() -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=1)
    failures: list[int] = []
    clock = Clock()
    bucket = RedisBucket(client, 20, "work", on_failure=lambda: failures.append(1), clock=clock)
    bucket._script = DownScript()  # type: ignore[assignment]  # a store that refuses every call
    with structlog.testing.capture_logs() as logs:
        assert await bucket.reserve(10) == pytest.approx(0.5)
        assert await bucket.reserve(10) == pytest.approx(1.0)
    assert len(failures) == 2
    assert [entry["event"] for entry in logs] == ["rate_limit_store_unavailable"]  # said once, not per call
    await bucket.aclose()
