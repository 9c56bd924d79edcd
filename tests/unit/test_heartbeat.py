"""The heartbeat keeps a message invisible while its handler runs: an extension that hangs, is
throttled or finds the message gone never lets it run twice, nor piles up more calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from conveyor import Message
from conveyor.processor.engine.heartbeat import Heartbeat
from conveyor.processor.engine.lease import InFlight, Lease
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.testing.sqs import InMemorySqs, client_error
from tests.unit.engine_support import QUEUE, left, running, sample, until


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


# One extension call that hangs (a read timeout) must not block every later extension.
async def test_an_extension_that_hangs_does_not_let_the_message_run_twice(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "slow")
    answer = fake.change_message_visibility_batch
    hung = False

    async def change(QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        nonlocal hung
        if not hung:  # one connection hangs until botocore's read timeout (30 s x 3 attempts in prod)
            hung = True
            await asyncio.sleep(2.5)
            raise ReadTimeoutError(endpoint_url="https://sqs")
        return await answer(QueueUrl=QueueUrl, Entries=Entries)

    fake.change_message_visibility_batch = change  # type: ignore[method-assign]
    runs, now, most = 0, 0, 0

    async def handler(message: Message) -> None:
        nonlocal runs, now, most
        runs, now = runs + 1, now + 1
        most = max(most, now)
        await asyncio.sleep(3)  # three visibility timeouts
        now -= 1

    async with running(fake, handler, visibility_timeout=1, pollers=2):
        await until(lambda: left(fake) == 0, timeout=10)
    assert (runs, most) == (1, 1)


# A failed extension does not end the heartbeat.
async def test_a_throttled_extension_is_retried_and_the_message_is_not_delivered_twice(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "slow")
    for _ in range(2):
        fake.fail_calls["ChangeMessageVisibilityBatch"].append(
            client_error("ThrottlingException", "ChangeMessageVisibilityBatch")
        )
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(3)  # three visibility timeouts

    async with running(fake, handler, visibility_timeout=1, pollers=2):
        await until(lambda: left(fake) == 0, timeout=8)
    assert calls == 1
    assert fake.queues[QUEUE].deleted[0].receive_count == 1


async def test_a_message_no_longer_in_flight_ends_its_heartbeat(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "slow")
    gone: set[str] = set()

    def refuse_first(entry: dict[str, object]) -> dict[str, object] | None:
        handle = str(entry["ReceiptHandle"])
        if not gone or handle in gone:  # the first receipt handle the heartbeat uses is gone for good
            gone.add(handle)
            return {"Code": "MessageNotInflight", "SenderFault": True}
        return None

    fake.fail_entries["ChangeMessageVisibilityBatch"] = refuse_first
    finish = asyncio.Event()

    async def handler(message: Message) -> None:
        await finish.wait()

    async with running(fake, handler, visibility_timeout=1) as engine:
        await until(lambda: sample(engine, "conveyor_processor_lease_lost_total", operation="change_visibility") == 1)
        # WHEN the message comes back (its visibility ran out) and its new lease is extended twice
        await until(lambda: len([h for h in extensions_tried(fake) if h not in gone]) >= 2, timeout=5)
        finish.set()
    # THEN the lease SQS no longer held was never extended again
    assert extensions_tried(fake).count(next(iter(gone))) == 1


def extensions_tried(fake: InMemorySqs) -> list[str]:
    """Receipt handles of every extension sent, in order."""
    calls = [kwargs for op, kwargs in fake.calls if op == "ChangeMessageVisibilityBatch"]
    return [entry["ReceiptHandle"] for kwargs in calls for entry in kwargs["Entries"]]


class RecordingAcker:
    """Takes extensions and answers none of them until told to."""

    def __init__(self) -> None:
        self.sent: list[tuple[Lease, int, Callable[[], None]]] = []

    def extend(self, lease: Lease, seconds: int, on_ok: Callable[[], None]) -> None:
        lease.extending += 1
        self.sent.append((lease, seconds, on_ok))


def test_extensions_do_not_pile_up_while_one_is_under_way() -> None:
    clock = [100.0]
    lease = Lease("m", "h", "x", {}, {}, received_at=100.0, visible_until=101.0)
    lease.start()
    inflight = InFlight()
    inflight.add(lease)
    acker = RecordingAcker()
    heartbeat = Heartbeat(inflight, acker, ProcessorMetrics(), 1.0, clock=lambda: clock[0])

    def beat_at(now: float) -> int:
        clock[0] = now
        heartbeat.beat()
        return len(acker.sent)

    # WHEN SQS does not answer the first extension and the heartbeat ticks again while there is time
    assert [beat_at(now) for now in (100.5, 100.55, 100.6)] == [1, 1, 1]
    # THEN once it is answered, a later tick extends again
    lease.extending -= 1
    acker.sent[0][2]()
    assert beat_at(101.1) == 2
    # and an extension left unanswered (a hung connection) is sent again once the end is near: the
    # visibility ends at 101.5; a third of a timeout before that, 101.17, it is overdue
    assert beat_at(101.15) == 2
    assert beat_at(101.2) == 3
