"""The writer's mirror: copies of accepted messages on a pre-prod queue, chosen by message id, never at
the live path's expense (what the clients hear, what is on each queue, the counters)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from conveyor import metadata
from conveyor.errors import ConfigurationError
from conveyor.settings import WriterSettings
from conveyor.testing.sqs import BASE, InMemorySqs, as_client
from conveyor.writer.app import create_app
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.mirror import BUFFER_MESSAGES, SENDERS, Mirror, chosen
from conveyor.writer.sending.outgoing import Outgoing
from tests.polling import until
from tests.unit.conftest import QUEUE

MIRROR = "preprod"


@asynccontextmanager
async def writer(fake: InMemorySqs, queue: str = QUEUE, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    config = WriterSettings(queue_name=queue, mirror_queue_url=BASE + settings.pop("mirror", MIRROR), **settings)
    app = create_app(config, client=as_client(fake))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            yield client


def messages(fake: InMemorySqs, name: str) -> list[Any]:
    return list(fake.queues[name].messages.values())


def counter(metrics: str, outcome: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f'conveyor_writer_mirror_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {outcome} sample")


def test_the_choice_is_the_message_ids_own() -> None:
    ids = [f"id-{n}" for n in range(2000)]
    first = [chosen(i, 0.5) for i in ids]
    assert first == [chosen(i, 0.5) for i in ids]  # the same id, the same answer
    assert 900 < sum(first) < 1100
    assert all(chosen(i, 1.0) for i in ids)
    assert not any(chosen(i, 0.0) for i in ids)
    assert all(chosen(i, 0.5) <= chosen(i, 0.8) for i in ids)  # a larger share keeps the smaller's


async def test_half_of_400_posts_are_copied_exactly_as_chosen(fake: InMemorySqs) -> None:
    fake.create(MIRROR, max_receive_count=None)
    async with writer(fake, mirror_ratio=0.5) as api:
        answers = await asyncio.gather(
            *(api.post("/messages", json={"body": {"n": n}, "attributes": {"tenant": "acme"}}) for n in range(400))
        )
        assert all(a.status_code == 202 for a in answers)
        ids = {a.json()["message_id"] for a in answers}
        expected = {i for i in ids if chosen(i, 0.5)}
        await until(lambda: len(messages(fake, MIRROR)) == len(expected))
        metrics = (await api.get("/metrics")).text
    assert len(messages(fake, QUEUE)) == 400
    live = {m.message_id: m for m in messages(fake, QUEUE)}
    copies = messages(fake, MIRROR)
    assert {c.attributes[metadata.MIRRORED]["StringValue"] for c in copies} == expected
    for copy in copies:
        original = live[copy.attributes[metadata.MIRRORED]["StringValue"]]
        assert copy.body == original.body
        assert copy.attributes["tenant"] == original.attributes["tenant"]
        assert copy.attributes[metadata.REQUEST_ID] == original.attributes[metadata.REQUEST_ID]
    assert counter(metrics, "sent") == len(expected)
    assert counter(metrics, "dropped") == counter(metrics, "failed") == 0


async def test_a_fifo_copy_keeps_its_group_and_derives_its_ids() -> None:
    fake = InMemorySqs()
    fake.create("orders.fifo")
    fake.create("preprod.fifo", max_receive_count=None)
    async with writer(fake, "orders.fifo", mirror="preprod.fifo") as api:
        response = await api.post(
            "/messages", json={"body": {"n": 1}, "group_id": "g-7", "deduplication_id": "d-1"},
            headers={"Idempotency-Key": "k-1"},
        )  # fmt: skip
        assert response.status_code == 202
        await until(lambda: len(messages(fake, "preprod.fifo")) == 1)
    sent = [e for name, kwargs in fake.calls if name == "SendMessageBatch" for e in kwargs["Entries"]]
    live, copy = sent
    assert copy["MessageGroupId"] == live["MessageGroupId"] == "g-7"
    assert (
        copy["MessageDeduplicationId"]
        == hashlib.sha256(f"conveyor.mirror:{live['MessageDeduplicationId']}".encode()).hexdigest()
    )
    key = live["MessageAttributes"][metadata.IDEMPOTENCY_KEY]["StringValue"]
    assert copy["MessageAttributes"][metadata.IDEMPOTENCY_KEY]["StringValue"] == f"mirror.{key}"


async def test_a_mirror_queue_that_fails_changes_nothing_for_the_clients(fake: InMemorySqs) -> None:
    fake.create(MIRROR, max_receive_count=None)
    app = create_app(WriterSettings(queue_name=QUEUE, mirror_queue_url=BASE + MIRROR), client=as_client(fake))
    async with app.router.lifespan_context(app):
        registry = app.state.writer.metrics.registry

        def failed() -> float:
            return registry.get_sample_value("conveyor_writer_mirror_total", {"outcome": "failed"}) or 0.0

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://writer") as api:
            first = await api.post("/messages", json={"body": {"n": 0}})
            await until(lambda: len(messages(fake, MIRROR)) == 1)
            del fake.queues[MIRROR]  # deleted mid-load
            answers = [await api.post("/messages", json={"body": {"n": n}}) for n in range(1, 21)]
            ready = await api.get("/readyz")
            await until(lambda: failed() == 20)
    assert first.status_code == 202
    assert [a.status_code for a in answers] == [202] * 20
    assert ready.status_code == 200  # readiness never depends on the mirror
    assert len(messages(fake, QUEUE)) == 21
    to_mirror = [k for name, k in fake.calls if name == "SendMessageBatch" and k["QueueUrl"] == BASE + MIRROR]
    assert len(to_mirror) < 12  # the senders back off: not a call per copy at full pace


async def test_a_mirror_queue_of_the_other_kind_stops_the_start(fake: InMemorySqs) -> None:
    fake.create("preprod.fifo", max_receive_count=None)
    with pytest.raises(ConfigurationError, match="is a FIFO queue and the live queue a standard one: they must be"):
        async with writer(fake, mirror="preprod.fifo"):
            pass


async def test_a_message_with_no_slot_left_for_the_mark_is_dropped(fake: InMemorySqs) -> None:
    fake.create(MIRROR, max_receive_count=None)
    eight = {f"a{i}": "v" for i in range(8)}  # with the request's id and content type: ten
    async with writer(fake) as api:
        response = await api.post("/messages", json={"body": {"n": 1}, "attributes": eight})
        metrics = (await api.get("/metrics")).text
    assert response.status_code == 202
    assert counter(metrics, "dropped") == 1
    assert messages(fake, MIRROR) == []


async def test_a_full_buffer_drops_copies_and_never_waits() -> None:
    class Hanging:
        calls = 0

        async def send_message_batch(self, **_: Any) -> dict[str, Any]:
            Hanging.calls += 1
            await asyncio.Event().wait()  # a mirror queue that never answers
            return {}

    metrics = WriterMetrics()
    mirror = Mirror(Hanging(), "http://mirror", 1.0, metrics, fifo=False, max_bytes=1_048_576)  # type: ignore[arg-type]
    outgoing = Outgoing('{"n":1}', {}, 7)
    async with asyncio.TaskGroup() as group:
        sending = group.create_task(mirror.run())
        for n in range(BUFFER_MESSAGES + 10):
            mirror.offer(outgoing, f"id-{n}")  # (returns at once, whatever the mirror does)
        await until(lambda: Hanging.calls == SENDERS)
        mirror.offer(outgoing, "one-more")  # the calls in flight left room: this one fits
        sending.cancel()
    dropped = metrics.registry.get_sample_value("conveyor_writer_mirror_total", {"outcome": "dropped"})
    failed = metrics.registry.get_sample_value("conveyor_writer_mirror_total", {"outcome": "failed"})
    assert dropped == 10  # buffered 1,000 of 1,010; the calls took ten each, and one more fitted
    assert failed == SENDERS * 10  # the calls the cancel cut short: their copies counted, not forgotten
    assert json.loads(outgoing.body) == {"n": 1}


async def test_an_error_of_ours_in_a_send_ends_no_sender() -> None:
    class Flaky:
        calls = 0

        async def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("a bug")
            return {"Successful": [{"Id": e["Id"]} for e in kwargs["Entries"]], "Failed": []}

    metrics = WriterMetrics()
    mirror = Mirror(Flaky(), "http://mirror", 1.0, metrics, fifo=False, max_bytes=1_048_576)  # type: ignore[arg-type]
    outgoing = Outgoing('{"n":1}', {}, 7)

    def sample(outcome: str) -> float:
        return metrics.registry.get_sample_value("conveyor_writer_mirror_total", {"outcome": outcome}) or 0.0

    async with asyncio.TaskGroup() as group:
        sending = group.create_task(mirror.run())
        mirror.offer(outgoing, "a")
        await until(lambda: sample("failed") == 1)
        mirror.offer(outgoing, "b")
        await until(lambda: sample("sent") == 1)
        await mirror.stop()
        sending.cancel()
    assert (sample("sent"), sample("failed"), sample("dropped")) == (1, 1, 0)
