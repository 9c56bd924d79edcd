"""FIFO queues on the in-memory SQS, which locks a message group while one of its
messages is in flight, as SQS does: order per group, groups in parallel, stop-the-group on retry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager

import pytest

from conveyor import BatchFailures, Message, Reject, Retry, batch_handler
from conveyor.processor.engine import Engine
from conveyor.processor.user_code import BatchHandler, adapt
from conveyor.testing.sqs import InMemorySqs
from tests.fifo_support import Timeline
from tests.unit.engine_support import running as engine_running
from tests.unit.engine_support import until

QUEUE = "work.fifo"
DLQ = "work-dlq.fifo"


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


def running(
    fake: InMemorySqs, handler: Callable[[Message], Awaitable[None]] | BatchHandler, **overrides: object
) -> AbstractAsyncContextManager[Engine]:
    return engine_running(fake, handler, queue=QUEUE, **overrides)


def put_groups(fake: InMemorySqs, groups: int, each: int) -> None:
    """Numbered messages, interleaved across groups as a producer would send them."""
    for n in range(each):
        for g in range(groups):
            fake.put(QUEUE, json.dumps({"g": f"g{g}", "n": n}), group=f"g{g}")


def left(fake: InMemorySqs, name: str = QUEUE) -> int:
    return len(fake.queues[name].messages)


async def test_each_group_runs_in_order_one_at_a_time_and_groups_run_in_parallel(fake: InMemorySqs) -> None:
    put_groups(fake, groups=6, each=15)
    timeline = Timeline()

    async def handler(message: Message) -> None:
        assert message.group_id is not None
        assert message.sequence_number is not None
        await timeline.run(message)

    async with running(fake, handler, concurrency=4):
        await until(lambda: left(fake) == 0, timeout=10)
    timeline.assert_in_order_without_overlap()
    assert {g: len(c) for g, c in timeline.calls.items()} == {f"g{g}": 15 for g in range(6)}
    assert timeline.peak == 4  # groups in parallel, up to the concurrency


async def test_a_slow_group_does_not_hold_up_the_others(fake: InMemorySqs) -> None:
    put_groups(fake, groups=3, each=5)
    slow_started = asyncio.Event()
    release_slow = asyncio.Event()
    done: list[str] = []

    async def handler(message: Message) -> None:
        body = message.json()
        if body == {"g": "g0", "n": 0}:
            slow_started.set()
            await release_slow.wait()
        done.append(body["g"])

    async with running(fake, handler, concurrency=2):
        await asyncio.wait_for(slow_started.wait(), 5)
        await until(lambda: done.count("g1") == 5 and done.count("g2") == 5)
        assert "g0" not in done  # the slow group waits for its first message, the others went on
        release_slow.set()
        await until(lambda: left(fake) == 0)


async def test_a_retry_stops_its_group_and_only_its_group(fake: InMemorySqs) -> None:
    put_groups(fake, groups=2, each=6)
    calls: list[tuple[str, int]] = []

    async def handler(message: Message) -> None:
        body = message.json()
        calls.append((body["g"], body["n"]))
        if body == {"g": "g0", "n": 2} and message.receive_count == 1:
            raise Retry(after=1)

    async with running(fake, handler, concurrency=2) as engine:
        await until(lambda: left(fake) == 0, timeout=10)
    group0 = [n for g, n in calls if g == "g0"]
    group1 = [n for g, n in calls if g == "g1"]
    # THEN g0 resumed with the failed message, and nothing after it ran before it succeeded
    assert group0 == [0, 1, 2, 2, 3, 4, 5]
    assert group1 == [0, 1, 2, 3, 4, 5]
    assert engine.metrics.registry.get_sample_value("conveyor_processor_retried_total") == 1
    # and g1 did not wait out g0's one-second retry: it finished before g0 did
    assert calls.index(("g1", 5)) < calls.index(("g0", 5))


async def test_a_dead_lettered_message_lets_its_group_go_on(fake: InMemorySqs) -> None:
    put_groups(fake, groups=1, each=4)
    seen: list[int] = []

    async def handler(message: Message) -> None:
        n = message.json()["n"]
        seen.append(n)
        if n == 1:
            raise Reject("bad")

    async with running(fake, handler):
        await until(lambda: left(fake) == 0 and left(fake, DLQ) == 1)
    assert seen == [0, 1, 2, 3]
    [dead] = fake.queues[DLQ].messages.values()
    assert json.loads(dead.body)["n"] == 1
    assert dead.group_id == "g0"  # a FIFO DLQ needs the group


async def test_a_receive_whose_answer_was_lost_gets_the_same_messages_back(fake: InMemorySqs) -> None:
    # GIVEN SQS hands out a group's messages but the answer never arrives
    put_groups(fake, groups=1, each=3)
    fake.lose_receive_answers = 1
    seen: list[int] = []

    async def handler(message: Message) -> None:
        seen.append(message.json()["n"])

    async with running(fake, handler, visibility_timeout=30):
        # THEN the retried receive (same ReceiveRequestAttemptId) gets them at once, not after 30 s
        await until(lambda: left(fake) == 0, timeout=3)
    attempts = [kwargs.get("ReceiveRequestAttemptId") for op, kwargs in fake.calls if op == "ReceiveMessage"]
    assert attempts[0] is not None
    assert attempts[1] == attempts[0]
    assert len(set(attempts)) > 1  # a new id once an answer arrived
    assert seen == [0, 1, 2]


async def test_shutdown_mid_run_then_restart_keeps_every_group_in_order(fake: InMemorySqs) -> None:
    put_groups(fake, groups=4, each=10)
    timeline = Timeline()

    async def handler(message: Message) -> None:
        await timeline.run(message, seconds=0.02)

    async with running(fake, handler, concurrency=3):
        await until(lambda: sum(len(c) for c in timeline.calls.values()) >= 12)
    # THEN what was not started went back; a new processor picks every group up where it stopped
    assert all(m.visible_at <= asyncio.get_running_loop().time() for m in fake.queues[QUEUE].messages.values())
    async with running(fake, handler, concurrency=3):
        await until(lambda: left(fake) == 0, timeout=10)
    timeline.assert_in_order_without_overlap()
    assert all(len(calls) == 10 for calls in timeline.calls.values())


async def test_a_batch_handler_gets_group_order_and_a_failure_stops_the_rest_of_its_group(fake: InMemorySqs) -> None:
    put_groups(fake, groups=1, each=5)
    batches: list[list[int]] = []

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        numbers = [m.json()["n"] for m in messages]
        batches.append(numbers)
        failed = {m.message_id: RuntimeError("later") for m in messages if m.json()["n"] == 2 and m.receive_count == 1}
        return failed  # n=3 and n=4 reported fine, but they follow a failure of their group

    with ThreadPoolExecutor(1) as pool:
        async with running(fake, adapt(handle, pool), retry_base_seconds=0, retry_max_seconds=0):
            await until(lambda: left(fake) == 0)
    assert batches[0] == [0, 1, 2, 3, 4]
    assert batches[1:] == [[2, 3, 4]]  # the group resumed from the failed message, in order
    assert sorted(json.loads(m.body)["n"] for m in fake.queues[QUEUE].deleted) == [0, 1, 2, 3, 4]


async def test_standard_queues_have_no_group_fields(fake: InMemorySqs) -> None:
    from tests.unit.engine_support import QUEUE as STANDARD  # noqa: PLC0415 - the other fixture's queue
    from tests.unit.engine_support import running as running_standard  # noqa: PLC0415

    fake.create(STANDARD)
    fake.put(STANDARD, "x")
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)

    async with running_standard(fake, handler):
        await until(lambda: len(seen) == 1)
    assert (seen[0].group_id, seen[0].deduplication_id, seen[0].sequence_number) == (None, None, None)
