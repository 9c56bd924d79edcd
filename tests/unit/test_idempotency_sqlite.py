"""What only the SQLite store has: several processes on one file, the clock, the sweep, the lock."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing, suppress
from pathlib import Path

import pytest

from conveyor.idempotency import Claim, RequestState, StoreUnavailableError, open_store
from conveyor.idempotency.sqlite_store import SWEEP_MIN_ROWS, SqliteStore
from tests.idempotency_support import FakeClock

REPO = Path(__file__).resolve().parents[2]


def rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


def test_two_processes_claiming_one_key_on_a_new_file_make_one_owner(tmp_path: Path) -> None:
    """The writer and the processor (or several uvicorn workers) start together on one file."""
    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    command = [sys.executable, "-m", "tests.idempotency_claimer", url, "contended"]
    processes = [
        subprocess.Popen([*command, name, "10"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for name in ("first", "second")
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
        outputs = [process.communicate("go\n", timeout=60)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    claims = Counter(answer for output in outputs for answer in json.loads(output))
    assert claims == {"claimed": 1, "in_progress": 19}
    assert [process.returncode for process in processes] == [0, 0]


async def test_two_stores_opening_a_new_file_at_once_both_answer(tmp_path: Path) -> None:
    """Switching a new file to WAL while another connection does is "database is locked" at once,
    without SQLite's busy handler: about one pair in fifty failed its first call (a 503 from a
    writer started with its processor, a flaky contract test). Many new files, to meet the race."""
    for attempt in range(200):
        path = tmp_path / f"new-{attempt}.sqlite3"
        async with SqliteStore(path) as first, SqliteStore(path) as second:
            answers = await asyncio.gather(first.claim(["a"], "x", 60), second.claim(["b"], "y", 60))
        assert list(answers) == [[Claim.CLAIMED], [Claim.CLAIMED]]


async def test_a_claim_lasts_exactly_its_lease(tmp_path: Path) -> None:
    clock = FakeClock()
    async with SqliteStore(tmp_path / "s.sqlite3", clock=clock) as store:
        await store.claim(["k"], "a", 30)
        clock.advance(29.9)
        assert await store.claim(["k"], "b", 30) == [Claim.IN_PROGRESS]
        clock.advance(0.1)
        assert await store.claim(["k"], "b", 30) == [Claim.CLAIMED]


async def test_in_flight_retry_after_follows_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    async with SqliteStore(tmp_path / "s.sqlite3", clock=clock) as store:
        await store.begin_request("key", "fp", 30)
        clock.advance(12)
        answer = await store.begin_request("key", "fp", 30)
    assert answer.state is RequestState.IN_FLIGHT
    assert answer.retry_after == pytest.approx(18)


async def test_markers_with_and_without_a_token_are_read(tmp_path: Path) -> None:
    """An in-flight marker written before markers had a token (an older writer) is read as one."""
    clock = FakeClock()
    path = tmp_path / "s.sqlite3"
    async with SqliteStore(path, clock=clock) as store:
        await store.begin_request("new", "fp", 30)  # the file and its table
        with closing(sqlite3.connect(path)) as db, db:
            old = json.dumps({"fingerprint": "fp", "state": "in_flight"})
            db.execute("INSERT INTO records VALUES (?, ?, ?)", ("conveyor:w:old", old, clock() + 30))
        answers = await store.begin_requests([("old", "fp"), ("new", "fp")], 30)
        assert [a.state for a in answers] == [RequestState.IN_FLIGHT, RequestState.IN_FLIGHT]
        await store.finish_requests([], 60, abandoned=["old", "new"])
        answers = await store.begin_requests([("old", "fp"), ("new", "fp")], 30)
        assert [a.state for a in answers] == [RequestState.NEW, RequestState.NEW]
    with closing(sqlite3.connect(path)) as db:
        [value] = db.execute("SELECT value FROM records WHERE key = 'conveyor:w:new'").fetchone()
    assert set(json.loads(value)) == {"fingerprint", "state", "token"}


async def test_expired_rows_are_swept_by_writes_within_a_bound(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "s.sqlite3"
    async with SqliteStore(path, clock=clock) as store:
        for start in range(0, 1000, 10):
            await store.complete([f"old-{i}" for i in range(start, start + 10)], "a", 60)
        assert rows(path) == 1000
        clock.advance(61)
        await store.claim(["new"], "a", 60)  # one write: at most max(32, 2 x 1) expired rows go
        assert rows(path) == 1000 + 1 - SWEEP_MIN_ROWS
        for _ in range(40):
            await store.complete([f"live-{i}" for i in range(10)], "a", 60)  # the same 10 keys again and again
    assert rows(path) == 11  # every expired row is gone; the live ones stay


async def test_a_store_locked_past_its_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    async with SqliteStore(path, busy_timeout=0.2) as store:
        await store.claim(["k"], "a", 60)
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # holds the write lock
            with pytest.raises(StoreUnavailableError, match="database is locked"):
                await store.claim(["k2"], "a", 60)
            other.execute("ROLLBACK")
        assert await store.claim(["k2"], "a", 60) == [Claim.CLAIMED]  # and it recovers


async def test_a_path_that_cannot_be_a_database_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    async with open_store(f"sqlite:///{tmp_path}/file/s.sqlite3") as store:
        with pytest.raises(StoreUnavailableError, match="SQLite store"):
            await store.claim(["k"], "a", 60)


async def test_a_file_that_is_not_sqlite_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "s.sqlite3").write_bytes(b"\x00garbage" * 1000)
    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        with pytest.raises(StoreUnavailableError, match="not a database"):
            await store.begin_request("k", "fp", 60)


async def test_the_file_is_in_wal_mode_and_made_with_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "state" / "idempotency.sqlite3"
    async with open_store(f"sqlite:///{path}") as store:
        await store.claim(["k"], "a", 60)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_the_event_loop_runs_while_the_store_waits_for_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async with SqliteStore(path, busy_timeout=0.5) as store:
        await store.claim(["k"], "a", 60)
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            task = asyncio.create_task(ticker())
            with pytest.raises(StoreUnavailableError):
                await store.claim(["k2"], "a", 60)
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            other.execute("ROLLBACK")
    assert ticks >= 3  # the loop kept going during the 0.5 s the claim waited (blocked: 1 tick)


async def test_aclose_twice_is_harmless(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.sqlite3")
    await store.claim(["k"], "a", 60)
    await store.aclose()
    await store.aclose()
