"""Effectively once in the processor: with an idempotency store (SQLite here), a handler
completes once per key, whatever SQS or producers duplicate."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from conveyor import BatchFailures, Message, Retry, batch_handler, idempotent, metadata
from conveyor.idempotency import Claim, IdempotencyStore, StoreUnavailableError, open_store
from conveyor.message import idempotency_options
from conveyor.processor.engine import Engine
from conveyor.processor.engine.claim_keys import KeyFunction
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.user_code import adapt
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.unit.engine_support import QUEUE, config_for, left, sample, started, until


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[IdempotencyStore]:
    async with open_store(f"sqlite:///{tmp_path}/idempotency.sqlite3") as opened:
        yield opened


class CountingStore:
    """The store, counting round trips; ``down`` makes the next calls fail as a store outage."""

    def __init__(self, store: IdempotencyStore) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()
        self.down = 0

    async def _call[T](self, name: str, call: Awaitable[T]) -> T:
        self.calls[name] += 1
        if self.down:
            self.down -= 1
            call.close()  # type: ignore[attr-defined]  # a coroutine never awaited
            raise StoreUnavailableError("injected outage")
        return await call

    async def claim(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[Claim]:
        return await self._call("claim", self.store.claim(keys, owner, lease_seconds))

    async def extend(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[bool]:
        return await self._call("extend", self.store.extend(keys, owner, lease_seconds))

    async def complete(self, keys: Sequence[str], owner: str, ttl_seconds: float) -> list[bool]:
        return await self._call("complete", self.store.complete(keys, owner, ttl_seconds))

    async def release(self, keys: Sequence[str], owner: str) -> None:
        await self._call("release", self.store.release(keys, owner))


def keyed(fake: InMemorySqs, key: str, copies: int, body: str | None = None) -> None:
    """What a producer retrying with one idempotency key leaves on the queue: several copies."""
    for _ in range(copies):
        fake.put(QUEUE, body or key, {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": key}})


@asynccontextmanager
async def running(
    fake: InMemorySqs,
    store: object,
    handler: Callable[[Message], Awaitable[None]],
    key_of: KeyFunction | None = None,
    **overrides: object,
) -> AsyncIterator[Engine]:
    config = config_for(fake, **overrides)
    dedupe = Dedupe(store, visibility_timeout=config.visibility_timeout, ttl_seconds=3600,  # type: ignore[arg-type]
                    linger=config.delete_linger, key_of=key_of)  # fmt: skip
    engine = Engine(as_client(fake), config, handler, dedupe=dedupe)
    async with started(engine):
        yield engine


async def test_copies_with_one_key_complete_the_handler_once(fake: InMemorySqs, store: IdempotencyStore) -> None:
    keyed(fake, "order-1", copies=3)
    keyed(fake, "order-2", copies=1)
    completed: list[str] = []

    async def handler(message: Message) -> None:
        completed.append(message.body)

    async with running(fake, CountingStore(store), handler, concurrency=1) as engine:
        await until(lambda: left(fake) == 0)
    assert sorted(completed) == ["order-1", "order-2"]
    assert sample(engine, "conveyor_processor_duplicates_skipped_total") == 2
    assert len(fake.queues[QUEUE].deleted) == 4


async def test_a_batch_of_ten_costs_one_claim_and_few_completions(fake: InMemorySqs, store: IdempotencyStore) -> None:
    for i in range(10):
        keyed(fake, f"k{i}", copies=1)
    counting = CountingStore(store)

    async def handler(message: Message) -> None:
        return None

    async with running(fake, counting, handler, concurrency=10):
        await until(lambda: left(fake) == 0)
    assert counting.calls["claim"] == 1  # one receive of ten, one round trip
    assert counting.calls["complete"] <= 2  # coalesced like the deletes


async def test_a_redelivery_after_a_lost_delete_is_not_handled_again(
    fake: InMemorySqs, store: IdempotencyStore
) -> None:
    fake.put(QUEUE, "x")  # no key: the message id is the key (SQS's own redelivery)
    lost = [True]

    def lose_first_delete(entry: dict[str, object]) -> dict[str, object] | None:
        if lost and lost.pop():
            return {"Code": "ReceiptHandleIsInvalid", "SenderFault": True}
        return None

    fake.fail_entries["DeleteMessageBatch"] = lose_first_delete
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1

    async with running(fake, CountingStore(store), handler, visibility_timeout=1) as engine:
        await until(lambda: left(fake) == 0, timeout=5)
    assert calls == 1
    assert sample(engine, "conveyor_processor_duplicates_skipped_total") == 1


async def test_a_failure_releases_the_claim_so_the_retry_runs(fake: InMemorySqs, store: IdempotencyStore) -> None:
    keyed(fake, "k", copies=1)
    attempts: list[int] = []

    async def handler(message: Message) -> None:
        attempts.append(message.receive_count)
        if len(attempts) == 1:
            raise Retry(after=0)

    async with running(fake, CountingStore(store), handler):
        await until(lambda: left(fake) == 0)
    assert attempts == [1, 2]


async def test_a_key_in_progress_elsewhere_is_deferred_then_skipped(fake: InMemorySqs, store: IdempotencyStore) -> None:
    keyed(fake, "busy", copies=1)
    await store.claim(["busy"], "another-process", 60)  # someone else is handling a copy right now

    async def handler(message: Message) -> None:
        raise AssertionError("a copy in progress elsewhere must not run here")

    async with running(fake, CountingStore(store), handler, visibility_timeout=1) as engine:
        await until(lambda: sample(engine, "conveyor_processor_duplicates_deferred_total") == 1)
        [message] = fake.queues[QUEUE].messages.values()
        assert message.visible_at > asyncio.get_running_loop().time()  # back to the queue, later
        # WHEN the other process completes it
        await store.complete(["busy"], "another-process", 60)
        message.visible_at = 0.0  # (do not wait out the deferral)
        # THEN the deferred copy is deleted without running the handler
        await until(lambda: left(fake) == 0)
    assert sample(engine, "conveyor_processor_duplicates_skipped_total") == 1


async def test_while_the_store_is_down_nothing_runs_and_nothing_is_released(
    fake: InMemorySqs, store: IdempotencyStore
) -> None:
    keyed(fake, "k", copies=1)
    counting = CountingStore(store)
    counting.down = 3
    ran = asyncio.Event()
    readiness: list[bool] = []

    async def handler(message: Message) -> None:
        ran.set()

    async with running(fake, counting, handler, poll_error_backoff_max=0.05) as engine:
        await until(lambda: counting.calls["claim"] >= 2)
        readiness.append(engine.health.ready)
        assert not ran.is_set()
        assert fake.received_total == 1  # held while it waits: no receive burnt
        await asyncio.wait_for(ran.wait(), 5)
        await until(lambda: left(fake) == 0)
    assert readiness == [False]
    assert fake.received_total == 1


async def test_the_handler_can_name_its_own_key(fake: InMemorySqs, store: IdempotencyStore) -> None:
    for order in ("a", "b", "a"):
        fake.put(QUEUE, f'{{"order": "{order}"}}')
    completed: list[str] = []

    @idempotent(key=lambda message: message.json()["order"])
    async def handler(message: Message) -> None:
        completed.append(message.json()["order"])

    key_of = idempotency_options(handler).key
    async with running(fake, CountingStore(store), handler, key_of=key_of, concurrency=1):
        await until(lambda: left(fake) == 0)
    assert sorted(completed) == ["a", "b"]


def test_a_handler_can_opt_out() -> None:
    @idempotent(enabled=False)
    async def handler(message: Message) -> None:
        return None

    async def plain(message: Message) -> None:
        return None

    assert not idempotency_options(handler).enabled
    assert idempotency_options(plain) == dataclasses.replace(idempotency_options(plain), enabled=True, key=None)


async def test_on_a_fifo_queue_a_deferred_message_holds_back_its_group(tmp_path: Path) -> None:
    fake = InMemorySqs()
    fake.create("work.fifo")
    for n in range(3):
        fake.put("work.fifo", str(n), {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": f"k{n}"}}, "g")
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.body)

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        await store.claim(["k0"], "another-process", 60)
        config = config_for(fake, "work.fifo", visibility_timeout=1)
        dedupe = Dedupe(store, visibility_timeout=1, ttl_seconds=60, linger=0.01)
        engine = Engine(as_client(fake), config, handler, dedupe=dedupe)
        async with started(engine):
            await until(
                lambda: engine.metrics.registry.get_sample_value("conveyor_processor_duplicates_deferred_total") == 1
            )
    assert seen == []  # 1 and 2 never ran before 0


@asynccontextmanager
async def fifo_batch_engine(fake: InMemorySqs, store: IdempotencyStore, seen: list[int]) -> AsyncIterator[Engine]:
    """A batch handler on ``work.fifo`` recording the ``n`` of each message it is given."""

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        seen.extend(message.json()["n"] for message in messages)
        return {}

    config = config_for(fake, "work.fifo", visibility_timeout=1, retry_max_seconds=1)
    dedupe = Dedupe(store, visibility_timeout=1, ttl_seconds=60, linger=0.01)
    with ThreadPoolExecutor(1) as pool:
        engine = Engine(as_client(fake), config, adapt(handle, pool), dedupe=dedupe)
        async with started(engine):
            yield engine


def put_keyed(fake: InMemorySqs, n: int, key: str, group: str = "g") -> None:
    attributes = {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": key}}
    fake.put("work.fifo", json.dumps({"n": n}), attributes, group)


async def test_a_fifo_batch_handler_runs_the_messages_before_a_deferred_one(tmp_path: Path) -> None:
    """The message before a deferred one of its group must run (it was once deleted without running)."""
    fake = InMemorySqs()
    fake.create("work.fifo")
    put_keyed(fake, 0, "a")
    put_keyed(fake, 1, "b")  # in progress elsewhere: deferred, and the group stops there
    put_keyed(fake, 2, "c")
    seen: list[int] = []
    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        await store.claim(["b"], "another-process", 60)
        async with fifo_batch_engine(fake, store, seen) as engine:
            await until(lambda: len(fake.queues["work.fifo"].deleted) == 1)
            deferred = engine.metrics.registry.get_sample_value("conveyor_processor_duplicates_deferred_total")
        assert await store.claim(["a", "c"], "someone-else", 60) == [Claim.COMPLETED, Claim.CLAIMED]
    assert seen == [0]  # 0 ran; 2 waits behind 1
    assert [json.loads(m.body)["n"] for m in fake.queues["work.fifo"].deleted] == [0]
    assert deferred == 1


async def test_two_copies_of_one_key_in_a_fifo_group_are_handled_once(tmp_path: Path) -> None:
    """Once, the first copy was acked unhandled (the second, held here, stopped the group), and
    the second then skipped as a duplicate: handled zero times."""
    fake = InMemorySqs()
    fake.create("work.fifo")
    put_keyed(fake, 0, "k")
    put_keyed(fake, 0, "k")
    seen: list[int] = []
    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store, fifo_batch_engine(fake, store, seen) as engine:
        await until(lambda: len(fake.queues["work.fifo"].messages) == 0, timeout=10)
        skipped = engine.metrics.registry.get_sample_value("conveyor_processor_duplicates_skipped_total")
    assert seen == [0]
    assert skipped == 1
