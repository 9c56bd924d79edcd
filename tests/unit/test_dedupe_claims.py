"""A claim that lapses while the store cannot be reached (a Redis failover: every renewal fails for
seconds while SQS's heartbeat keeps the message) and the store comes back while the handler still
runs: the claim is taken back if nobody took it; if another processor took it, that processor's run
stands, and this one's completion is a visible duplicate, not a second recorded success."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path

from structlog.testing import capture_logs

from conveyor import Message, metadata
from conveyor.idempotency import Claim, IdempotencyStore, StoreUnavailableError
from conveyor.idempotency.sqlite_store import SqliteStore
from conveyor.processor.engine import Engine
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.engine.lease import Lease
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.idempotency_support import FakeClock
from tests.unit.engine_support import QUEUE, config_for, left, sample, started, until

KEY = "order-1"
LEASE = 6.0  # visibility 1 s and the claim's margin of 5 s


class Failover:
    """The store as processor A reaches it: while ``down``, every call fails as during a Redis
    failover. Counts the calls, by method, that failed and that worked."""

    def __init__(self, store: IdempotencyStore) -> None:
        self.store = store
        self.down = False
        self.failed: Counter[str] = Counter()
        self.worked: Counter[str] = Counter()

    def __getattr__(self, name: str) -> object:
        call = getattr(self.store, name)
        if name not in ("claim", "extend", "complete", "release"):
            return call

        async def guarded(*args: object) -> object:
            if self.down:
                self.failed[name] += 1
                raise StoreUnavailableError("Redis store: ConnectionError: failover in progress")
            answer = await call(*args)
            self.worked[name] += 1
            return answer

        return guarded


@dataclass
class ProcessorA:
    """One engine on the fake queue with the store behind ``failover``; its handler waits for
    ``finish``. ``wall`` is the store's clock, ``mono`` the dedupe's."""

    fake: InMemorySqs
    store: SqliteStore
    failover: Failover
    wall: FakeClock
    mono: FakeClock
    engine: Engine
    finish: asyncio.Event
    handling: asyncio.Event
    ran: list[str] = field(default_factory=list)


@asynccontextmanager
async def processor_a(tmp_path: Path) -> AsyncIterator[ProcessorA]:
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "copy 1", {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": KEY}})
    wall, mono = FakeClock(1_000_000.0), FakeClock(0.0)
    store = SqliteStore(tmp_path / "idempotency.sqlite3", clock=wall)
    failover = Failover(store)
    finish, handling = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def handler(message: Message) -> None:
        handling.set()
        await finish.wait()  # a long handler, still running when the store comes back
        ran.append(message.body)

    dedupe = Dedupe(failover, visibility_timeout=1, ttl_seconds=3600, linger=0.01, owner="A", clock=mono)  # type: ignore[arg-type]
    engine = Engine(as_client(fake), config_for(fake, visibility_timeout=1), handler, dedupe=dedupe)
    try:
        async with started(engine):
            await asyncio.wait_for(handling.wait(), 5)
            try:
                yield ProcessorA(fake, store, failover, wall, mono, engine, finish, handling, ran)
            finally:
                finish.set()  # (a failed test must not wait out the grace)
    finally:
        await store.aclose()


async def lapse_during_an_outage(a: ProcessorA) -> None:
    """The store is down while the claim's renewals fall due: they fail, tick after tick, until the
    claim's lease has ended in the store."""
    a.failover.down = True
    a.mono.advance(LEASE - 2)  # within half a lease of its end: each heartbeat tick tries a renewal
    await until(lambda: a.failover.failed["extend"] >= 2, what="renewals failing during the outage")
    a.wall.advance(LEASE + 1)  # the claim ended in the store meanwhile


def held_by(path: Path, key: str, now: float) -> dict[str, str] | None:
    """The live record of ``key`` in the SQLite file (a plain look, outside any store)."""
    with closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT value, expires_at FROM records WHERE key = ?", (f"conveyor:h:{key}",)).fetchone()
    return None if row is None or row[1] <= now else dict(json.loads(row[0]))


async def test_a_claim_that_lapsed_while_the_store_was_down_is_taken_back_when_it_answers(tmp_path: Path) -> None:
    async with processor_a(tmp_path) as a:
        await lapse_during_an_outage(a)
        with capture_logs() as logs:
            a.failover.down = False  # the failover is over; the handler still runs
            path = tmp_path / "idempotency.sqlite3"
            await until(lambda: held_by(path, KEY, a.wall()) == {"owner": "A", "state": "claimed"},
                        what="the claim taken back by A")  # fmt: skip
        # the producer's retry copy reaches processor B now: B must wait (deferred), not run it
        assert await a.store.claim([KEY], "B", 60) == [Claim.IN_PROGRESS]
        a.finish.set()
        await until(lambda: left(a.fake) == 0)
    assert a.ran == ["copy 1"]
    assert any(event["event"] == "idempotency_claim_taken_back" and event["key"] == KEY for event in logs)
    assert sample(a.engine, "conveyor_processor_succeeded_total") == 1
    assert sample(a.engine, "conveyor_processor_duplicates_completed_total") == 0
    async with SqliteStore(path, clock=a.wall) as b:
        assert await b.claim([KEY], "B", 60) == [Claim.COMPLETED]


async def test_a_claim_another_processor_took_during_the_outage_makes_the_late_completion_a_duplicate(
    tmp_path: Path,
) -> None:
    """B claimed the key once A's claim had ended and completed it first (at 9 s, say); A's handler
    completes later (at 14 s): not a second success, a duplicate in the metrics and the logs."""
    async with processor_a(tmp_path) as a:
        await lapse_during_an_outage(a)
        assert await a.store.claim([KEY], "B", 60) == [Claim.CLAIMED]  # B's copy of the key runs
        await a.store.complete([KEY], "B", 3600)
        with capture_logs() as logs:
            a.failover.down = False
            await until(lambda: any(e["event"] == "idempotency_claim_lost" for e in logs), what="the loss noticed")
            a.finish.set()
            await until(lambda: left(a.fake) == 0)
    assert a.ran == ["copy 1"]  # the message is deleted all the same: the handler did run
    [lost] = [event for event in logs if event["event"] == "idempotency_claim_lost"]
    assert lost["key"] == KEY
    [duplicate] = [event for event in logs if event["event"] == "duplicate_completed"]
    assert duplicate["key"] == KEY
    assert sample(a.engine, "conveyor_processor_duplicates_completed_total") == 1
    assert sample(a.engine, "conveyor_processor_succeeded_total") == 0


async def test_a_completion_after_another_processor_took_the_claim_is_not_recorded_over_it(
    tmp_path: Path,
) -> None:
    """A's claim ended and B claimed the key; A's handler completes before any renewal of A noticed
    (the next heartbeat tick has not come): A's completion must not be written over B's live claim
    (B's run decides: completed, or released for a retry), and it is a visible duplicate."""
    async with processor_a(tmp_path) as a:
        a.wall.advance(LEASE + 1)  # A's claim ended in the store (its renewals failed)
        assert await a.store.claim([KEY], "B", 60) == [Claim.CLAIMED]
        with capture_logs() as logs:
            a.finish.set()
            await until(lambda: left(a.fake) == 0)
        path = tmp_path / "idempotency.sqlite3"
        assert held_by(path, KEY, a.wall()) == {"owner": "B", "state": "claimed"}
    assert a.ran == ["copy 1"]
    assert [event["key"] for event in logs if event["event"] == "duplicate_completed"] == [KEY]
    assert sample(a.engine, "conveyor_processor_duplicates_completed_total") == 1
    assert sample(a.engine, "conveyor_processor_succeeded_total") == 0


class Scripted:
    """A store whose renewal finds the claim gone and whose re-take answers only when the test says,
    as two pooled Redis connections may: a release sent after the re-take can land before it."""

    def __init__(self) -> None:
        self.retake = asyncio.Event()
        self.retaking = asyncio.Event()
        self.released: list[list[str]] = []
        self.claims = 0

    async def claim(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[Claim]:
        self.claims += 1
        if self.claims > 1:  # the re-take
            self.retaking.set()
            await self.retake.wait()
        return [Claim.CLAIMED] * len(keys)

    async def extend(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[bool]:
        return [False] * len(keys)

    async def release(self, keys: Sequence[str], owner: str) -> None:
        self.released.append(list(keys))

    async def complete(self, keys: Sequence[str], owner: str, ttl_seconds: float) -> list[bool]:
        return [True] * len(keys)


async def test_a_claim_taken_back_after_its_handler_failed_is_released_again() -> None:
    """The handler fails while the re-take is under way, and its release lands first: the re-take
    then writes the claim again. Left there, every other processor would defer the retry for a lease."""
    store, mono = Scripted(), FakeClock(0.0)
    raw = {"MessageId": "m1", "ReceiptHandle": "h1", "Body": "x",
           "MessageAttributes": {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": KEY}}}  # fmt: skip
    lease = Lease.from_sqs(raw, received_at=0.0, visibility=1)
    made_visible: list[str] = []
    async with Dedupe(store, visibility_timeout=1, ttl_seconds=60, linger=0.01, clock=mono) as dedupe:  # type: ignore[arg-type]
        await dedupe.admit([lease])
        lease.start()
        mono.advance(LEASE - 2)
        renewal = dedupe.renew()
        assert renewal is not None
        await asyncio.wait_for(store.retaking.wait(), 5)
        lease.settle()
        dedupe.failed(lease, then=lambda: made_visible.append(lease.message_id))
        await until(lambda: made_visible == ["m1"])
        store.retake.set()
        await renewal
    assert store.released == [[KEY], [KEY]]
