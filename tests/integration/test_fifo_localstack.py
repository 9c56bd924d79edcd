"""FIFO queues on a real local SQS: per-group order under concurrency, stop-the-group on retry,
dead-lettered messages let their group go on, a stop mid-run keeps every group in order."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest
from harness.localstack import send_groups

from conveyor import Message, Reject, Retry
from conveyor.localstack import LocalStack
from tests.fifo_support import Timeline
from tests.integration.test_processor_localstack import engine_on
from tests.localstack_fixtures import Queues, count, drain, make_queues
from tests.polling import until

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@pytest.fixture
def fifo(localstack: LocalStack) -> Queues:
    return make_queues(localstack.endpoint, fifo=True)


async def test_each_group_in_order_groups_in_parallel(fifo: Queues, sqs: SQSClient) -> None:
    send_groups(sqs, fifo.url, groups=5, each=12)
    record = Timeline()

    async with engine_on(fifo, record.run, concurrency=5, pollers=2):
        await until(lambda: sum(len(c) for c in record.calls.values()) == 60, 30, "60 handled")
    record.assert_in_order_without_overlap()
    assert all(record.numbers(f"g{g}") == list(range(12)) for g in range(5))
    assert record.peak > 1  # groups ran side by side


async def test_a_retry_holds_back_its_group_only_and_a_dead_letter_lets_it_go_on(fifo: Queues, sqs: SQSClient) -> None:
    send_groups(sqs, fifo.url, groups=3, each=5)
    calls: list[tuple[str, int]] = []

    async def handler(message: Message) -> None:
        body = message.json()
        calls.append((body["g"], body["n"]))
        if body == {"g": "g0", "n": 1} and message.receive_count == 1:
            raise Retry(after=2)
        if body == {"g": "g1", "n": 2}:
            raise Reject("bad")

    async with engine_on(fifo, handler, concurrency=3):
        [dead] = await asyncio.to_thread(drain, sqs, fifo.dlq_url, 1)
        await until(lambda: count(sqs, fifo.url) == (0, 0), 30, "queue empty")
    assert [n for g, n in calls if g == "g0"] == [0, 1, 1, 2, 3, 4]
    assert [n for g, n in calls if g == "g1"] == [0, 1, 2, 3, 4]
    assert [n for g, n in calls if g == "g2"] == [0, 1, 2, 3, 4]
    assert json.loads(dead["Body"]) == {"g": "g1", "n": 2}
    assert calls.index(("g2", 4)) < calls.index(("g0", 4))  # g2 did not wait for g0's retry


async def test_a_stop_mid_run_then_a_restart_keeps_every_group_in_order(fifo: Queues, sqs: SQSClient) -> None:
    send_groups(sqs, fifo.url, groups=4, each=10)
    record = Timeline()

    async with engine_on(fifo, record.run, concurrency=2):
        await until(lambda: sum(len(c) for c in record.calls.values()) >= 10, 30, "some handled")
    async with engine_on(fifo, record.run, concurrency=2):
        await until(lambda: sum(len(c) for c in record.calls.values()) == 40, 30, "all handled")
    record.assert_in_order_without_overlap()
    assert all(record.numbers(f"g{g}") == list(range(10)) for g in range(4))
