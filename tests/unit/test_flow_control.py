"""Flow control in the engine, on the in-memory SQS: a throttle's pause, the breaker, the rate limit
and adaptive concurrency, as the queue and the handler see them."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest

from conveyor import Message, Reject, Throttle
from conveyor.processor.config import BreakerPolicy, FlowConfig
from conveyor.processor.engine import Engine
from conveyor.settings import ProcessorSettings, describe_errors
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.unit.engine_support import DLQ, QUEUE, config_for, left, running, sample, started, until

BREAKER = BreakerPolicy(min_calls=5, failure_ratio=0.5, window=10, pause=0.5, probes=2, retry_seconds=30)


def receive_times(fake: InMemorySqs) -> list[float]:
    """When each ReceiveMessage call began (the loop's clock)."""
    times: list[float] = []
    receive = fake.receive_message

    async def timed(**kwargs: Any) -> dict[str, Any]:
        times.append(asyncio.get_running_loop().time())
        return await receive(**kwargs)

    fake.receive_message = timed  # type: ignore[method-assign,assignment]
    return times


def visibility_changes(fake: InMemorySqs) -> list[int]:
    return [
        int(entry["VisibilityTimeout"])
        for operation, kwargs in fake.calls
        if operation == "ChangeMessageVisibilityBatch"
        for entry in kwargs["Entries"]
    ]


async def test_a_throttle_brings_the_message_back_after_its_delay_and_no_receive_starts_meanwhile() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "slow down")
    receives = receive_times(fake)
    throttled_at: list[float] = []
    handled: list[str] = []

    async def handler(message: Message) -> None:
        if not throttled_at:
            throttled_at.append(asyncio.get_running_loop().time())
            raise Throttle(after=2)
        handled.append(message.body)

    async with running(fake, handler, flow=FlowConfig(adaptive=True)) as engine:
        await until(lambda: handled == ["slow down"], 10, "handled on its second delivery")
        assert sample(engine, "conveyor_processor_throttled_total") == 1
        assert sample(engine, "conveyor_processor_concurrency_limit") < engine.config.concurrency
        assert sample(engine, "conveyor_processor_retried_total") == 1  # a retry, as any Retry
    assert visibility_changes(fake) == [2]
    started_during_pause = [t for t in receives if throttled_at[0] < t < throttled_at[0] + 2 - 0.05]
    assert started_during_pause == []
    assert left(fake, DLQ) == 0


async def test_the_breaker_opens_releases_what_waits_and_resumes_once_the_downstream_heals() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE, max_receive_count=3)
    for i in range(40):
        fake.put(QUEUE, str(i))
    down = True
    handled: set[str] = set()
    calls_while_open: list[float] = []

    async def handler(message: Message) -> None:
        if down:
            if engine.flow.breaker and engine.flow.breaker.state.name != "CLOSED":
                calls_while_open.append(asyncio.get_running_loop().time())
            raise ConnectionError("downstream refused")
        handled.add(message.body)

    config = config_for(fake, concurrency=5, max_receive_count=3, flow=FlowConfig(breaker=BREAKER))
    engine = Engine(as_client(fake), config, handler)
    async with started(engine):
        await until(lambda: engine.health.describe()["breaker"] == "open", 5, "the breaker open")
        assert not engine.health.ready
        assert sample(engine, "conveyor_processor_breaker_state") == 1
        assert sample(engine, "conveyor_processor_breaker_transitions_total", to="open") == 1
        assert sample(engine, "conveyor_processor_released_total") > 0  # held, not started: given back
        await until(lambda: len(calls_while_open) >= 3, 10, "probes")
        down = False
        await until(lambda: engine.health.describe()["breaker"] == "closed", 10, "closed again")
        assert engine.health.ready
        # what failed while open is pushed out (30 s): the rest is handled now
        await until(lambda: len(handled) >= 40 - sample(engine, "conveyor_processor_retried_total"), 10, "the rest")
    assert left(fake, DLQ) == 0
    retried_while_open = [seconds for seconds in visibility_changes(fake) if seconds >= BREAKER.retry_seconds]
    assert len(retried_while_open) >= len(calls_while_open)
    # the probes came a pause apart, two at a time
    rounds = sorted({round(t, 1) for t in calls_while_open})
    assert all(b - a >= BREAKER.pause - 0.05 for a, b in itertools.pairwise(rounds))
    assert len(calls_while_open) <= BREAKER.probes * len(rounds)


async def test_rejected_messages_do_not_open_the_breaker() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    for i in range(30):
        fake.put(QUEUE, str(i))

    async def handler(message: Message) -> None:
        raise Reject("not for us")

    async with running(fake, handler, flow=FlowConfig(breaker=BREAKER)) as engine:
        await until(lambda: left(fake, DLQ) == 30, 10, "all dead-lettered")
        assert engine.health.describe()["breaker"] == "closed"
        assert sample(engine, "conveyor_processor_breaker_transitions_total", to="open") == 0


async def test_throttles_do_not_open_the_breaker() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    for i in range(30):
        fake.put(QUEUE, str(i))
    seen: set[str] = set()

    async def handler(message: Message) -> None:
        if message.body not in seen:
            seen.add(message.body)
            raise Throttle(after=0)

    async with running(fake, handler, flow=FlowConfig(adaptive=True, breaker=BREAKER)) as engine:
        await until(lambda: left(fake) == 0, 15, "all handled after their throttle")
        assert sample(engine, "conveyor_processor_throttled_total") == 30
        assert sample(engine, "conveyor_processor_breaker_transitions_total", to="open") == 0


async def test_the_rate_limit_holds_the_starts_to_the_rate_plus_one_burst() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    for i in range(50):
        fake.put(QUEUE, str(i))
    starts: list[float] = []

    async def handler(message: Message) -> None:
        starts.append(asyncio.get_running_loop().time())

    rate = 25.0
    engine_start = asyncio.get_running_loop().time()
    async with running(fake, handler, concurrency=20, pollers=2, flow=FlowConfig(rate_per_second=rate)) as engine:
        await until(lambda: len(starts) == 50, 15, "all started")
        assert sample(engine, "conveyor_processor_rate_limit_per_second") == rate
        assert sample(engine, "conveyor_processor_rate_limit_wait_seconds_total") > 0
    # the bucket starts empty and holds a second's worth at most: by any moment t, at most
    # rate x t + burst starts (a slower machine only starts fewer)
    for count, at in enumerate(sorted(starts), start=1):
        assert count <= rate * (at - engine_start) + rate


async def test_adaptive_concurrency_shrinks_to_what_the_downstream_takes_and_nothing_is_lost() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE, max_receive_count=3)
    for i in range(60):
        fake.put(QUEUE, str(i))
    running_now = 0
    handled: set[str] = set()

    async def handler(message: Message) -> None:
        nonlocal running_now
        if running_now >= 3:  # a downstream that takes three calls at once
            raise Throttle(after=0.05)
        running_now += 1
        try:
            await asyncio.sleep(0.02)
        finally:
            running_now -= 1
        handled.add(message.body)

    async with running(fake, handler, concurrency=20, max_receive_count=3, flow=FlowConfig(adaptive=True)) as engine:
        await until(lambda: len(handled) == 60, 30, "all handled")
        assert sample(engine, "conveyor_processor_concurrency_limit") < 20
        assert engine.slots.capacity < engine.config.capacity  # holding what it can start soon
    assert left(fake, DLQ) == 0


async def test_a_stop_while_the_breaker_is_open_ends_at_once_and_gives_every_message_back() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE, max_receive_count=None)
    for i in range(20):
        fake.put(QUEUE, str(i))

    async def handler(message: Message) -> None:
        raise ConnectionError("down")

    long_pause = dataclasses.replace(BREAKER, pause=600)
    engine = Engine(as_client(fake), config_for(fake, concurrency=2, flow=FlowConfig(breaker=long_pause)), handler)
    task = asyncio.create_task(engine.run())
    await until(lambda: engine.health.describe()["breaker"] == "open", 5, "open")
    engine.stop()
    await asyncio.wait_for(task, 5)  # not the pause's ten minutes
    assert left(fake) == 20  # none deleted unprocessed
    assert len(engine.inflight) == 0  # each one released or back after its retry delay, none held


async def test_a_stop_while_waiting_for_tokens_ends_at_once() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    for i in range(20):
        fake.put(QUEUE, str(i))
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(message.body)

    engine = Engine(as_client(fake), config_for(fake, flow=FlowConfig(rate_per_second=0.01)), handler)
    task = asyncio.create_task(engine.run())
    await until(lambda: sample(engine, "conveyor_processor_rate_limit_wait_seconds_total") > 0, 5, "waiting")
    engine.stop()
    await asyncio.wait_for(task, 5)  # not the 100 s a token takes
    assert handled == []
    assert left(fake) == 20


@pytest.mark.parametrize(
    ("environment", "line"),
    [
        (
            {"rate_limit_store": "redis://127.0.0.1:6379/0"},
            "CONVEYOR_RATE_LIMIT_STORE needs CONVEYOR_RATE_LIMIT_PER_SECOND",
        ),
        (
            {"rate_limit_store": "sqlite:///x.db", "rate_limit_per_second": 5},
            "invalid setting CONVEYOR_RATE_LIMIT_STORE: Value error, the rate limit's store is redis://",
        ),
        (
            {"rate_limit_per_second": 0},
            "CONVEYOR_RATE_LIMIT_PER_SECOND: Input should be greater than 0",
        ),
        ({"breaker_failure_ratio": 1.5}, "invalid setting CONVEYOR_BREAKER_FAILURE_RATIO"),
    ],
)
def test_flow_settings_that_cannot_work_fail_in_one_line(environment: dict[str, object], line: str) -> None:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - pydantic's ValidationError, read below
        ProcessorSettings(**environment)  # type: ignore[arg-type]
    assert any(line in said for said in describe_errors(caught.value))  # type: ignore[arg-type]


def test_a_rate_store_password_is_never_repeated() -> None:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - pydantic's ValidationError, read below
        ProcessorSettings(rate_limit_store="redis://:hunter2-secret@127.0.0.1:6379/0")
    assert "hunter2" not in " ".join(describe_errors(caught.value))  # type: ignore[arg-type]
    settings = ProcessorSettings(rate_limit_store="redis://:hunter2-secret@127.0.0.1:6379/0", rate_limit_per_second=5)
    assert "hunter2" not in repr(settings)


async def test_a_fifth_of_calls_failing_fast_does_not_open_the_breaker_at_the_start() -> None:
    # the first results of a round are its fast failures: with a minimum below the concurrency they
    # would open the breaker before the round's successes come in
    fake = InMemorySqs()
    fake.create(QUEUE, max_receive_count=None)
    for i in range(200):
        fake.put(QUEUE, str(i))
    failed: set[str] = set()
    handled: set[str] = set()

    async def handler(message: Message) -> None:
        if int(message.body) % 5 == 0 and message.body not in failed:
            failed.add(message.body)
            raise RuntimeError("fails fast, once")
        await asyncio.sleep(0.05)
        handled.add(message.body)

    settings = ProcessorSettings(concurrency=50, breaker_min_calls=20)
    flow = FlowConfig.build(settings, QUEUE)
    async with running(fake, handler, concurrency=50, retry_base_seconds=0, retry_max_seconds=0, flow=flow) as engine:
        await until(lambda: len(handled) == 200, 20, "all handled")
        assert sample(engine, "conveyor_processor_breaker_transitions_total", to="open") == 0


async def test_a_limit_no_load_reaches_does_not_grow_back() -> None:
    # one message at a time: a limit of 10 after a throttle is never reached, so nothing is learnt
    # about the downstream and the limit stays where the throttle put it
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "throttled")
    handled: list[str] = []

    async def handler(message: Message) -> None:
        if message.body == "throttled" and message.receive_count == 1:
            raise Throttle(after=0)
        handled.append(message.body)

    async with running(fake, handler, concurrency=20, flow=FlowConfig(adaptive=True)) as engine:
        await until(lambda: handled == ["throttled"], 5, "handled")
        for i in range(30):  # a trickle, one at a time, over three seconds
            fake.put(QUEUE, str(i))
            await until(lambda i=i: str(i) in handled, 5, "handled")  # type: ignore[misc]
            await asyncio.sleep(0.1)
        assert sample(engine, "conveyor_processor_concurrency_limit") == 10


async def test_after_a_throttle_the_idle_workers_do_not_start_more_than_the_new_limit() -> None:
    # idle workers hold no permit: the ones waiting for a message when the limit fell start none above it
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "throttle-me")
    running_now = peak = 0
    done: list[str] = []

    async def handler(message: Message) -> None:
        nonlocal running_now, peak
        if message.body == "throttle-me":
            if message.receive_count == 1:
                raise Throttle(after=0)
        else:
            running_now += 1
            peak = max(peak, running_now)
            try:
                await asyncio.sleep(0.2)  # the work
            finally:
                running_now -= 1
        done.append(message.body)

    async with running(fake, handler, concurrency=10, flow=FlowConfig(adaptive=True)) as engine:
        await until(lambda: "throttle-me" in done, 5, "throttled, then handled")
        limit = engine.flow.concurrency
        assert limit < 10
        for i in range(20):
            fake.put(QUEUE, str(i))
        await until(lambda: len(done) == 21, 20, "all handled")
    assert peak <= limit


async def test_under_a_rate_limit_what_waited_in_the_buffer_starts_one_token_apart() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    for i in range(40):
        fake.put(QUEUE, str(i))
    busy = asyncio.Event()
    starts: list[float] = []
    rate = 20.0

    async def handler(message: Message) -> None:
        starts.append(asyncio.get_running_loop().time())
        if len(starts) <= 2:
            await busy.wait()  # the two workers are busy while the pollers fill the buffer

    config = {"concurrency": 2, "prefetch": 20, "pollers": 2, "flow": FlowConfig(rate_per_second=rate)}
    async with running(fake, handler, **config) as engine:  # type: ignore[arg-type]
        await until(lambda: engine.buffer.qsize() >= 15, 10, "the buffer filled while the handlers were busy")
        released = len(starts)
        busy.set()
        await until(lambda: len(starts) >= released + 15, 10, "the buffered ones started")
    gaps = [b - a for a, b in zip(starts[released:], starts[released + 1 :], strict=False)]
    assert min(gaps) >= 0.9 / rate, f"starts {min(gaps):.3f} s apart at {rate:g}/s"
