"""FIFO held deletes and a stop: once a stop has begun nothing is held, so a hard stop (the second
signal) or a kill -9 during the grace runs no done message again; and a group's held deletes go by
the earliest deadline of any of them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conveyor import Message
from conveyor.processor.engine import Engine
from conveyor.processor.engine.acker import HELD_DELETE_MAX_SECONDS, Acker
from conveyor.processor.engine.lease import InFlight, Lease
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.unit.engine_support import config_for, until

QUEUE = "work.fifo"


def on_queue(fake: InMemorySqs) -> set[int]:
    return {json.loads(m.body)["n"] for m in fake.queues[QUEUE].messages.values()}


async def test_a_hard_stop_after_the_first_signal_loses_no_held_delete() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE, max_receive_count=5)
    for n in range(3):
        fake.put(QUEUE, json.dumps({"n": n}), group="g")
    second_started = asyncio.Event()

    async def handler(message: Message) -> None:
        if message.json()["n"] == 1:
            second_started.set()
            await asyncio.Event().wait()  # runs until cancelled

    engine = Engine(as_client(fake), config_for(fake, QUEUE, visibility_timeout=30.0), handler)
    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(second_started.wait(), 5)
    assert 0 in on_queue(fake)  # done, its delete held for the group's run
    engine.stop()  # the first signal: the held delete goes
    await until(lambda: 0 not in on_queue(fake), timeout=5)
    task.cancel()  # the second signal: stop at once
    await asyncio.gather(task, return_exceptions=True)
    assert 0 not in on_queue(fake)


class Client:
    """Answers every delete and visibility change, noting when each delete call was made."""

    def __init__(self) -> None:
        self.deletes: list[tuple[float, list[str]]] = []

    async def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.deletes.append((asyncio.get_running_loop().time(), [e["ReceiptHandle"] for e in Entries]))
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    async def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def held(handle: str, visible_until: float) -> Lease:
    return Lease(handle, handle, "", {}, {"MessageGroupId": "g"}, received_at=0.0, visible_until=visible_until)


async def test_a_group_s_held_deletes_go_by_the_earliest_deadline_of_any_of_them() -> None:
    loop = asyncio.get_running_loop()
    client = Client()
    now = loop.time()
    async with Acker(client, "q", InFlight(), ProcessorMetrics(), linger=0.01, clock=loop.time) as acker:  # type: ignore[arg-type]
        acker.delete_later(held("first", now + 60.0))
        acker.delete_later(held("second", now + 0.3))  # its visibility ends first
        await until(lambda: bool(client.deletes), timeout=5)
    sent_at, handles = client.deletes[0]
    assert sent_at - now < 0.3  # before the second's visibility ended
    assert handles == ["first", "second"]


async def test_a_held_delete_waits_no_longer_than_the_hold_limit() -> None:
    loop = asyncio.get_running_loop()
    client = Client()
    now = loop.time()
    async with Acker(client, "q", InFlight(), ProcessorMetrics(), linger=0.01, clock=loop.time) as acker:  # type: ignore[arg-type]
        acker.delete_later(held("first", now + 3600.0))  # half its visibility is half an hour
        await until(lambda: bool(client.deletes), timeout=HELD_DELETE_MAX_SECONDS + 5)
    assert client.deletes[0][0] - now < HELD_DELETE_MAX_SECONDS + 1
