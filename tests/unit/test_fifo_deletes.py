"""FIFO deletes: the done messages of a group's run go in one DeleteMessageBatch with its last one
(SQS delivers nothing more of a group while any of its messages is in flight, so waiting delays
nothing), never later than halfway to their visibility deadline, and never left behind by a stop or
a failure that ends the run early."""

from __future__ import annotations

import asyncio
import json

import pytest

from conveyor import Message, Retry
from conveyor.testing.sqs import InMemorySqs
from tests.unit.engine_support import left, running, until

QUEUE = "work.fifo"


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


def put_run(fake: InMemorySqs, each: int, group: str = "g") -> None:
    for n in range(each):
        fake.put(QUEUE, json.dumps({"n": n}), group=group)


def delete_calls(fake: InMemorySqs) -> list[int]:
    """The number of entries of each DeleteMessageBatch, in order."""
    return [len(kwargs["Entries"]) for op, kwargs in fake.calls if op == "DeleteMessageBatch"]


def on_queue(fake: InMemorySqs) -> set[int]:
    return {json.loads(m.body)["n"] for m in fake.queues[QUEUE].messages.values()}


async def test_a_run_of_ten_is_deleted_in_one_call_however_far_apart_its_completions(fake: InMemorySqs) -> None:
    put_run(fake, 10)
    handled: list[int] = []

    async def handler(message: Message) -> None:
        await asyncio.sleep(0.03)  # each completion further from the next than the 10 ms delete linger
        handled.append(message.json()["n"])

    async with running(fake, handler, queue=QUEUE, concurrency=4):
        await until(lambda: left(fake, QUEUE) == 0, timeout=10)
    assert handled == list(range(10))
    assert delete_calls(fake) == [10]


async def test_a_retry_that_stops_the_group_sends_the_done_messages_before_it(fake: InMemorySqs) -> None:
    put_run(fake, 6)
    calls: list[int] = []

    async def handler(message: Message) -> None:
        n = message.json()["n"]
        calls.append(n)
        if n == 2 and message.receive_count == 1:
            raise Retry(after=1)

    async with running(fake, handler, queue=QUEUE, concurrency=4):
        await until(lambda: on_queue(fake) == {2, 3, 4, 5}, timeout=5)  # 0 and 1 deleted, the rest back
        await until(lambda: left(fake, QUEUE) == 0, timeout=10)
    assert calls == [0, 1, 2, 2, 3, 4, 5]  # nothing before the failed one handled twice


async def test_a_stop_during_a_run_sends_its_held_deletes(fake: InMemorySqs) -> None:
    put_run(fake, 5)
    third_started, finish_third = asyncio.Event(), asyncio.Event()

    async def handler(message: Message) -> None:
        if message.json()["n"] == 2:
            third_started.set()
            await finish_third.wait()

    async with running(fake, handler, queue=QUEUE, concurrency=4) as engine:
        await asyncio.wait_for(third_started.wait(), 5)
        engine.stop()
        finish_third.set()
    assert on_queue(fake) == {3, 4}  # 0, 1 (held) and 2 deleted; the two never started released


async def test_a_held_delete_goes_by_half_its_visibility_while_the_group_still_runs(fake: InMemorySqs) -> None:
    put_run(fake, 3)
    second_started, finish = asyncio.Event(), asyncio.Event()

    async def handler(message: Message) -> None:
        if message.json()["n"] == 1:
            second_started.set()
            await finish.wait()  # the heartbeat keeps it; the first's delete must not wait for it

    async with running(fake, handler, queue=QUEUE, concurrency=4, visibility_timeout=2.0):
        await asyncio.wait_for(second_started.wait(), 5)
        await until(lambda: 0 not in on_queue(fake), timeout=5)
        assert on_queue(fake) == {1, 2}
        finish.set()
        await until(lambda: left(fake, QUEUE) == 0, timeout=10)
