"""A shutdown while a received batch waits for its idempotency claims (the store is down): the
messages were received and never started, so they are released at visibility 0 like every such
message, not left to wait out their visibility timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from conveyor import Message
from conveyor.idempotency import Claim, StoreUnavailableError
from conveyor.processor.engine import Engine
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.unit.engine_support import config_for, sample, started, until

VISIBILITY = 30  # what the messages would wait without the release


class DownStore:
    """A store that cannot answer: each claim fails at once, or (``hangs``) never answers."""

    def __init__(self, *, hangs: bool = False) -> None:
        self.hangs = hangs
        self.claims = 0

    async def claim(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[Claim]:
        self.claims += 1
        if self.hangs:
            await asyncio.Event().wait()
        raise StoreUnavailableError("Redis store: ConnectionError: Connection refused")

    async def release(self, keys: Sequence[str], owner: str) -> None:
        raise StoreUnavailableError("Redis store: ConnectionError: Connection refused")


def visible_in(fake: InMemorySqs, queue: str) -> list[float]:
    """Seconds until each message on the queue is visible again (0 or less: visible now)."""
    now = asyncio.get_running_loop().time()
    return [message.visible_at - now for message in fake.queues[queue].messages.values()]


@pytest.mark.parametrize("queue", ["work", "work.fifo"])
@pytest.mark.parametrize("hangs", [False, True], ids=["failing-fast", "hanging"])
async def test_a_stop_during_admission_releases_the_batch_at_visibility_0(queue: str, hangs: bool) -> None:
    fake = InMemorySqs()
    fake.create(queue)
    for n in range(3):
        fake.put(queue, f"m{n}", group="g" if queue.endswith(".fifo") else None)
    ran: list[str] = []

    async def handler(message: Message) -> None:
        ran.append(message.body)

    store = DownStore(hangs=hangs)
    dedupe = Dedupe(store, visibility_timeout=VISIBILITY, ttl_seconds=60, linger=0.01)  # type: ignore[arg-type]
    # a long backoff: without a fast store call, the stop comes while the poller waits to claim again
    config = config_for(fake, queue, visibility_timeout=VISIBILITY, poll_error_backoff_max=60)
    engine = Engine(as_client(fake), config, handler, dedupe=dedupe)
    async with started(engine):
        await until(lambda: store.claims >= 1 and fake.received_total == 3, what="the batch waiting for its claims")
    assert ran == []  # nothing ran without its claim
    assert len(visible_in(fake, queue)) == 3
    assert max(visible_in(fake, queue)) <= 0  # was: 30 s (their whole visibility timeout)
    assert sample(engine, "conveyor_processor_released_total") == 3
