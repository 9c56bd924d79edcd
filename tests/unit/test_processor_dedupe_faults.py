"""Effectively once when things go wrong: a key the store cannot keep, a store call that
fails once, a store that raises what it should not. Nothing runs twice, nothing is lost, the engine
never stops."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conveyor import BatchFailures, Message, batch_handler, idempotent, metadata
from conveyor.idempotency import Claim, IdempotencyStore, StoreUnavailableError, open_store
from conveyor.idempotency.sqlite_store import SqliteStore
from conveyor.message import idempotency_options
from conveyor.processor.engine import Engine
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.engine.heartbeat import Heartbeat
from conveyor.processor.engine.lease import InFlight, Lease
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.user_code import adapt
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.idempotency_support import FakeClock
from tests.unit.engine_support import DLQ, QUEUE, config_for, left, started, until


def keyed(key: str) -> dict[str, object]:
    return {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": key}}


class Flaky:
    """A store whose named method fails ``fails`` times (a Redis blip; with ``error``, a store's bug),
    counting the calls that worked."""

    def __init__(self, store: IdempotencyStore, method: str, fails: int = 1, error: Exception | None = None) -> None:
        self.store, self.method, self.fails = store, method, fails
        self.error = error or StoreUnavailableError("one Redis timeout")
        self.succeeded = 0

    def __getattr__(self, name: str) -> object:
        call = getattr(self.store, name)
        if name != self.method:
            return call

        async def flaky(*args: object) -> object:
            if self.fails:
                self.fails -= 1
                raise self.error
            answer = await call(*args)
            self.succeeded += 1
            return answer

        return flaky


def lease_with(key: str | None, message_id: str = "m1", body: str = "x") -> Lease:
    raw = {"MessageId": message_id, "ReceiptHandle": "h1", "Body": body, "MessageAttributes": keyed(key) if key else {}}
    return Lease.from_sqs(raw, received_at=0.0, visibility=30)


@pytest.mark.parametrize("value", [None, "", "\ud800", b"bytes", 3.5, True])
def test_a_key_the_store_cannot_keep_falls_back_to_the_message_id(value: object) -> None:
    dedupe = Dedupe(object(), visibility_timeout=30, ttl_seconds=60, linger=0.01, key_of=lambda _: value)  # type: ignore[arg-type, return-value]
    assert dedupe.key(lease_with(None, "id-1")) == "id-1"


def test_a_key_function_may_return_a_number() -> None:
    dedupe = Dedupe(object(), visibility_timeout=30, ttl_seconds=60, linger=0.01, key_of=lambda _: 42)  # type: ignore[arg-type]
    assert dedupe.key(lease_with(None)) == "42"


async def test_a_key_function_returning_a_lone_surrogate_does_not_stop_the_engine(tmp_path: Path) -> None:
    """A plain producer's valid JSON {"order": "\\ud800"}: the key function returns a string no store
    can encode. It was a UnicodeEncodeError out of the poller: the engine crashed, again and again."""
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, '{"order": "\\ud800"}')
    fake.put(QUEUE, '{"order": "fine"}')
    seen: list[str] = []

    @idempotent(key=lambda message: message.json()["order"])
    async def handler(message: Message) -> None:
        seen.append(message.body)

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        dedupe = Dedupe(
            store, visibility_timeout=2, ttl_seconds=60, linger=0.01, key_of=idempotency_options(handler).key
        )
        engine = Engine(as_client(fake), config_for(fake), handler, dedupe=dedupe)
        async with started(engine) as task:
            await until(lambda: left(fake) == 0 or task.done())
    assert sorted(seen) == ['{"order": "\\ud800"}', '{"order": "fine"}']


async def test_a_store_that_raises_an_unexpected_error_defers_the_batch_and_the_engine_goes_on(
    tmp_path: Path,
) -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "one", keyed("k1"))
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.body)

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as real:
        store = Flaky(real, "claim", error=RuntimeError("a bug in a store"))
        dedupe = Dedupe(store, visibility_timeout=1, ttl_seconds=60, linger=0.01)  # type: ignore[arg-type]
        engine = Engine(as_client(fake), config_for(fake, visibility_timeout=1), handler, dedupe=dedupe)
        async with started(engine) as task:
            await until(lambda: seen == ["one"] or task.done(), timeout=10)
            deferred = engine.metrics.registry.get_sample_value("conveyor_processor_duplicates_deferred_total")
    assert seen == ["one"]  # once, after the deferral: never without its claim
    assert deferred == 1


class SqsAnswersAtOnce:
    """The heartbeat's acker: every visibility extension succeeds at once."""

    def extend(self, lease: Lease, seconds: int, on_ok: object) -> None:
        on_ok()  # type: ignore[operator]


async def test_a_claim_renewal_that_fails_once_is_tried_again_before_the_claim_ends(tmp_path: Path) -> None:
    """Visibility 300 s: the claim lasts 305 s. Its first renewal (at 190 s) fails once; it used to be
    tried again only with the next visibility extension (340 s): the claim ended at 305 s while the
    handler still ran, and another processor could claim the key and run a second copy."""
    wall, mono = FakeClock(1_000_000.0), [0.0]
    store = SqliteStore(tmp_path / "s.sqlite3", clock=wall)
    flaky = Flaky(store, "extend")
    inflight = InFlight()
    lease = lease_with("order-9")
    inflight.add(lease)
    dedupe = Dedupe(flaky, visibility_timeout=300, ttl_seconds=3600, linger=0.01, clock=lambda: mono[0])  # type: ignore[arg-type]
    beat = Heartbeat(
        inflight,
        SqsAnswersAtOnce(),
        ProcessorMetrics(),
        300,
        clock=lambda: mono[0],
        on_beat=lambda: renewals.append(dedupe.renew()),
    )
    others: list[Claim] = []
    renewals: list[asyncio.Task[None] | None] = []
    async with dedupe:
        await dedupe.admit([lease])
        lease.start()  # the handler runs for 400 s
        for t in range(40, 400, 50):  # the heartbeat's ticks
            mono[0], wall.now = float(t), 1_000_000.0 + t
            beat.beat()
            if (renewal := renewals.pop()) is not None:  # this tick's store call
                await renewal
            others += await store.claim(["order-9"], "another-processor", 305)
    await store.aclose()
    assert flaky.succeeded >= 1  # the failed renewal was tried again
    assert others == [Claim.IN_PROGRESS] * len(others)


async def test_a_completion_the_store_missed_is_recorded_later_and_a_copy_meanwhile_is_skipped(
    tmp_path: Path,
) -> None:
    """One failed COMPLETE call: the message is deleted (the handler ran), the key stayed "claimed by
    us", and the next copy received here was answered CLAIMED: the handler ran twice."""
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "first", keyed("order-7"))
    ran: list[str] = []

    async def handler(message: Message) -> None:
        ran.append(message.body)

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as real:
        store = Flaky(real, "complete")
        dedupe = Dedupe(store, visibility_timeout=2, ttl_seconds=60, linger=0.01)  # type: ignore[arg-type]
        engine = Engine(as_client(fake), config_for(fake, concurrency=1), handler, dedupe=dedupe)
        async with started(engine):
            await until(lambda: len(fake.queues[QUEUE].deleted) == 1)
            fake.put(QUEUE, "the producer's retry", keyed("order-7"))
            await until(lambda: len(fake.queues[QUEUE].deleted) == 2)
            await until(lambda: store.succeeded >= 1)  # recorded by a later heartbeat tick
        assert await real.claim(["order-7"], "another-processor", 60) == [Claim.COMPLETED]
    assert ran == ["first"]
    assert engine.metrics.registry.get_sample_value("conveyor_processor_duplicates_skipped_total") == 1


async def test_completions_the_store_missed_are_tried_once_more_at_shutdown(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as real:
        store = Flaky(real, "complete")
        lease = lease_with("order-8")
        deleted: list[str] = []
        async with Dedupe(store, visibility_timeout=300, ttl_seconds=60, linger=0.01) as dedupe:  # type: ignore[arg-type]
            await dedupe.admit([lease])
            lease.start()
            dedupe.completed(lease, then=lambda: deleted.append(lease.message_id))
            await until(lambda: deleted == ["m1"])
        assert await real.claim(["order-8"], "another-processor", 60) == [Claim.COMPLETED]


# Corners of the same faults: a store bug at shutdown, a huge integer key, two leases of one message
# in a batch, a FIFO shutdown behind an abandoned thread, a claim answer crossing a completion.


async def test_a_store_bug_in_complete_does_not_crash_the_engine_at_shutdown(tmp_path: Path) -> None:
    """The poller now survives "a bug of ours or the store's" in claim; the same bug in complete goes
    to ``_unrecorded`` and the one last ``_record`` in ``Dedupe.__aexit__`` lets it out of Engine.run."""
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "one", keyed("k1"))
    ran: list[str] = []

    async def handler(message: Message) -> None:
        ran.append(message.body)

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as real:
        store = Flaky(real, "complete", fails=1_000_000, error=RuntimeError("a bug in a store"))
        dedupe = Dedupe(store, visibility_timeout=2, ttl_seconds=60, linger=0.01)  # type: ignore[arg-type]
        engine = Engine(as_client(fake), config_for(fake), handler, dedupe=dedupe)
        async with started(engine) as task:
            await until(lambda: len(fake.queues[QUEUE].deleted) == 1 or task.done())
    assert ran == ["one"]
    assert task.done()
    assert task.exception() is None  # was: RuntimeError('a bug in a store') out of Engine.run


async def test_a_key_function_returning_a_huge_integer_does_not_defer_its_whole_batch(tmp_path: Path) -> None:
    """README: a key function may return an integer. One with more than 4300 digits makes
    ``_usable_key``'s ``str(value)`` raise ValueError outside the key function's fallback: admit
    raises, the poller marks the WHOLE batch in progress, and every message received with it is
    deferred at each receive until the redrive policy moves them to the DLQ, never run."""
    fake = InMemorySqs()
    fake.create(QUEUE, max_receive_count=3)
    fake.put(QUEUE, "huge")
    fake.put(QUEUE, "innocent")
    seen: list[str] = []

    @idempotent(key=lambda message: 10**5000 if message.body == "huge" else message.body)
    async def handler(message: Message) -> None:
        seen.append(message.body)

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        dedupe = Dedupe(
            store, visibility_timeout=1, ttl_seconds=60, linger=0.01, key_of=idempotency_options(handler).key
        )
        config = config_for(fake, visibility_timeout=1, max_receive_count=3)
        engine = Engine(as_client(fake), config, handler, dedupe=dedupe)
        async with started(engine) as task:
            await until(lambda: left(fake) == 0 or task.done(), timeout=15)
    assert sorted(seen) == ["huge", "innocent"]  # was: [] (both dead-lettered unrun)
    assert left(fake, DLQ) == 0


async def test_a_message_handled_during_shutdown_is_deleted_even_if_the_store_has_a_bug(tmp_path: Path) -> None:
    """Worse than the crash: the error out of ``Dedupe.__aexit__`` reaches ``Acker.__aexit__``, whose
    batchers' task groups abort and cancel the flush of the deletes still pending: a message whose
    handler finished within the grace period stays on the queue and runs again."""
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "slow", keyed("k1"))
    ran: list[str] = []
    handling = asyncio.Event()

    async def handler(message: Message) -> None:
        handling.set()
        await asyncio.sleep(0.3)  # still running when the stop comes; finishes within the grace
        ran.append(message.body)

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as real:
        store = Flaky(real, "complete", fails=1_000_000, error=RuntimeError("a bug in a store"))
        dedupe = Dedupe(store, visibility_timeout=30, ttl_seconds=60, linger=0.01)  # type: ignore[arg-type]
        engine = Engine(as_client(fake), config_for(fake, visibility_timeout=30), handler, dedupe=dedupe)
        async with started(engine):
            await asyncio.wait_for(handling.wait(), 5)
    assert ran == ["slow"]
    assert [m.body for m in fake.queues[QUEUE].deleted] == ["slow"]  # was: [] (left on the queue: runs again)


class DeliversOneTwice:
    """SQS standard delivers at least once: the first receive hands out its first message twice (two
    receipt handles, one message id), as when a redelivery and the original meet in one batch."""

    def __init__(self, fake: InMemorySqs) -> None:
        self.fake = fake
        self.done = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.fake, name)

    async def receive_message(self, **kwargs: object) -> dict[str, object]:
        answer = await self.fake.receive_message(**kwargs)  # type: ignore[arg-type]
        messages = answer.get("Messages", [])
        if messages and not self.done:
            self.done = True
            copy = dict(messages[0], ReceiptHandle="another-" + messages[0]["ReceiptHandle"])
            answer = {"Messages": [*messages, copy]}
        return answer


async def test_two_leases_of_one_message_in_one_batch_run_it_and_do_not_keep_its_claim(tmp_path: Path) -> None:
    """Admission.decided (and .behind) are keyed by message id: the local copy's Defer is applied to
    the claimed lease too. It never runs, its claim is never released, and ``Dedupe._holders`` keeps
    it: every later delivery of the message is "held here" (IN_PROGRESS), deferred until the redrive
    policy dead-letters it, never run."""
    fake = InMemorySqs()
    fake.create(QUEUE, max_receive_count=4)
    fake.put(QUEUE, "x", keyed("order-1"))
    seen: list[str] = []

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        seen.extend(message.body for message in messages)
        return {}

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        dedupe = Dedupe(store, visibility_timeout=1, ttl_seconds=60, linger=0.01)
        config = config_for(fake, visibility_timeout=1, max_receive_count=4, retry_max_seconds=1)
        with ThreadPoolExecutor(1) as pool:
            engine = Engine(
                as_client(DeliversOneTwice(fake)),  # type: ignore[arg-type]
                config,
                adapt(handle, pool),
                dedupe=dedupe,
            )
            async with started(engine) as task:
                await until(lambda: left(fake) == 0 or task.done(), timeout=15)
    assert seen == ["x"]  # was: [] (deferred at each delivery, then dead-lettered)
    assert left(fake, DLQ) == 0


async def test_at_a_fifo_shutdown_the_group_behind_an_abandoned_thread_comes_back_with_it(tmp_path: Path) -> None:
    """Grace expired while a batch handler's thread still runs m0: m0 is left to its visibility
    timeout; m1 (deferred) and m2 (behind it) were released at once, and a server that does not lock
    the group (LocalStack) could deliver them before m0."""
    fake = InMemorySqs()
    fake.create("work.fifo")
    for n, key in enumerate(("a", "b", "c")):
        fake.put("work.fifo", json.dumps({"n": n}), keyed(key), "g")
    release = threading.Event()
    handling = threading.Event()

    @batch_handler
    def handle(messages: list[Message]) -> BatchFailures:
        handling.set()
        release.wait(10)
        return {}

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        await store.claim(["b"], "another-process", 60)
        config = config_for(fake, "work.fifo", visibility_timeout=30, shutdown_grace=0.1)
        dedupe = Dedupe(store, visibility_timeout=30, ttl_seconds=60, linger=0.01)
        with ThreadPoolExecutor(1) as pool:
            engine = Engine(as_client(fake), config, adapt(handle, pool), dedupe=dedupe)
            async with started(engine):
                await until(handling.is_set)
            release.set()
    soonest = min(m.visible_at for m in fake.queues["work.fifo"].messages.values()) - time.monotonic()
    assert soonest > 20  # none of the group is visible before m0 (30 s)


async def test_a_claim_answer_that_crossed_a_completion_here_is_a_duplicate(tmp_path: Path) -> None:
    """Answers of pooled connections can cross: a claim sent before this process's completion landed
    answers CLAIMED (our own claim) after the completion's callback ran."""

    class AlwaysClaimed:
        async def claim(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[Claim]:
            return [Claim.CLAIMED] * len(keys)

        async def complete(self, keys: Sequence[str], owner: str, ttl_seconds: float) -> list[bool]:
            return [True] * len(keys)

    first, copy = lease_with("order-1", "m1"), lease_with("order-1", "m2")
    done: list[str] = []
    async with Dedupe(AlwaysClaimed(), visibility_timeout=30, ttl_seconds=60, linger=0.01) as dedupe:  # type: ignore[arg-type]
        await dedupe.admit([first])
        first.start()
        dedupe.completed(first, then=lambda: done.append("deleted"))
        await until(lambda: done == ["deleted"])
        await dedupe.admit([copy])
    assert copy.claim is Claim.COMPLETED
