"""Retry delays SQS can take: a Retry(after=...) that is not a finite number, a decision that
fails, a delay after many receives, a retry at the twelve-hour cap."""

from __future__ import annotations

import asyncio
import math

import pytest

from conveyor import Message, Retry
from conveyor.processor.engine.backoff import retry_delay
from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS
from conveyor.testing.sqs import InMemorySqs
from tests.unit.engine_support import QUEUE, left, running, sample, until


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


# Retry(after=...) that is not a finite number.
@pytest.mark.parametrize("after", [math.nan, math.inf, -1, "soon", None, True])
def test_retry_refuses_an_after_that_is_not_a_finite_number(after: object) -> None:
    with pytest.raises(ValueError, match="Retry"):
        Retry(after=after)  # type: ignore[arg-type]  # the wrong type is the point


async def test_an_error_inside_the_decision_is_a_retry_not_a_crash(fake: InMemorySqs) -> None:
    for body in ("nan", "fine"):
        fake.put(QUEUE, body)
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(message.body)
        if message.body == "nan" and message.receive_count == 1:
            retry = Retry(after=1)
            retry.after = math.nan  # set after the check: the decision must still hold
            raise retry
        if message.body == "nan" and message.receive_count == 2:
            raise Retry(after=math.nan)  # raising inside the handler: a ValueError, retried

    async with running(fake, handler, concurrency=1, retry_base_seconds=0, retry_max_seconds=0):
        await until(lambda: left(fake) == 0)
    assert calls.count("nan") == 3
    assert calls.count("fine") == 1


# Numbers SQS does not take.
def test_the_retry_delay_does_not_overflow_after_many_receives() -> None:
    assert retry_delay(1_025, 1, 300, rand=lambda: 1.0) == 300
    assert retry_delay(10**9, 1, 300, rand=lambda: 1.0) == 300


async def test_a_retry_at_the_twelve_hour_cap_is_clamped_to_what_sqs_accepts(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")

    async def handler(message: Message) -> None:
        raise Retry(after=MAX_VISIBILITY_SECONDS)

    async with running(fake, handler) as engine:
        await until(lambda: fake.count("ChangeMessageVisibilityBatch") == 1)
        await until(lambda: len(engine.inflight) == 0)
        assert sample(engine, "conveyor_processor_lease_lost_total", operation="change_visibility") == 0
    [(_, kwargs)] = [c for c in fake.calls if c[0] == "ChangeMessageVisibilityBatch"]
    seconds = kwargs["Entries"][0]["VisibilityTimeout"]
    assert MAX_VISIBILITY_SECONDS - 60 <= seconds < MAX_VISIBILITY_SECONDS
    [message] = fake.queues[QUEUE].messages.values()
    assert message.visible_at > asyncio.get_running_loop().time() + 3600  # not visible again soon
