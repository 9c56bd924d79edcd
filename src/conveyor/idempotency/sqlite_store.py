"""The embedded store: one SQLite file in WAL mode, shared by every process on one host.

Each operation is one transaction (``BEGIN IMMEDIATE``: the write lock is taken first, so a claim is
atomic across connections and processes) run in the store's own thread, so the event loop never
waits on the disk or on a lock. Rows hold the same JSON values as the Redis store, with an absolute
expiry read from the injected clock; an expired row counts as absent, and every write also deletes a
bounded number of expired rows (at least twice as many as it can add), so the table cannot grow
beyond the live keys plus a constant.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

from conveyor.idempotency import records
from conveyor.idempotency.errors import StoreUnavailableError
from conveyor.idempotency.store import Abandon, Claim, RequestClaim, RequestState, StoredResponse

BUSY_TIMEOUT_SECONDS = 5.0
WAL_RETRY_SECONDS = 0.005  # between two tries to switch a new file to WAL
SWEEP_MIN_ROWS = 32
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_at);
"""

Clock = Callable[[], float]


class SqliteStore:
    """See :class:`~conveyor.idempotency.IdempotencyStore`. ``clock`` gives wall-clock seconds (it is
    compared with expiries written by other processes); tests move it."""

    def __init__(self, path: Path, *, clock: Clock = time.time, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self._path = path
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-idempotency")
        self._connection: sqlite3.Connection | None = None  # only touched in that thread
        self._closed = False
        self.transactions = 0  # one per call: the store's round trips

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    async def claim(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[Claim]:
        lease = records.millis(lease_seconds, "lease_seconds") / 1000
        record = records.claim_record(owner)
        names = records.handler_keys(keys)
        if not names:
            return []

        def run(db: sqlite3.Connection, now: float) -> list[Claim]:
            answers = []
            for key in names:
                current = _live(db, key, now)
                if current is not None and current["state"] == records.COMPLETED:
                    answers.append(Claim.COMPLETED)
                elif current is not None and current.get("owner") != owner:
                    answers.append(Claim.IN_PROGRESS)
                else:
                    _put(db, key, record, now + lease)
                    answers.append(Claim.CLAIMED)
            return answers

        return await self._write(run, len(names))

    async def extend(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[bool]:
        lease = records.millis(lease_seconds, "lease_seconds") / 1000
        names = records.handler_keys(keys)

        def run(db: sqlite3.Connection, now: float) -> list[bool]:
            renewed = []
            for key in names:
                held = _owned(_live(db, key, now), owner)
                if held:
                    db.execute("UPDATE records SET expires_at = ? WHERE key = ?", (now + lease, key))
                renewed.append(held)
            return renewed

        return await self._write(run, 0)

    async def complete(self, keys: Sequence[str], owner: str, ttl_seconds: float) -> list[bool]:
        ttl = records.millis(ttl_seconds, "ttl_seconds") / 1000
        record = records.completed_record()
        names = records.handler_keys(keys)

        def run(db: sqlite3.Connection, now: float) -> list[bool]:
            marked = []
            for key in names:
                current = _live(db, key, now)
                theirs = current is not None and current["state"] == records.CLAIMED and current.get("owner") != owner
                if not theirs:
                    _put(db, key, record, now + ttl)
                marked.append(not theirs)
            return marked

        return await self._write(run, len(names))

    async def release(self, keys: Sequence[str], owner: str) -> None:
        names = records.handler_keys(keys)

        def run(db: sqlite3.Connection, now: float) -> None:
            for key in names:
                if _owned(_live(db, key, now), owner):
                    db.execute("DELETE FROM records WHERE key = ?", (key,))

        await self._write(run, 0)

    async def begin_request(self, key: str, fingerprint: str, lease_seconds: float) -> RequestClaim:
        [claim] = await self.begin_requests([(key, fingerprint)], lease_seconds)
        return claim

    async def begin_requests(self, requests: Sequence[tuple[str, str]], lease_seconds: float) -> list[RequestClaim]:
        return await self.finish_and_begin_requests((), (), requests, ttl_seconds=1, lease_seconds=lease_seconds)

    async def finish_request(self, key: str, fingerprint: str, response: StoredResponse, ttl_seconds: float) -> None:
        ttl = records.millis(ttl_seconds, "ttl_seconds") / 1000
        name = records.request_key(key)
        record = records.response_record(fingerprint, response)

        def run(db: sqlite3.Connection, now: float) -> None:
            _put(db, name, record, now + ttl)

        await self._write(run, 1)

    async def abandon_request(self, key: str, token: str | None = None) -> None:
        await self.finish_and_begin_requests(
            (), [key if token is None else (key, token)], (), ttl_seconds=1, lease_seconds=1
        )

    async def finish_requests(
        self,
        finished: Sequence[tuple[str, str, StoredResponse]],
        ttl_seconds: float,
        *,
        abandoned: Sequence[Abandon] = (),
    ) -> None:
        await self.finish_and_begin_requests(finished, abandoned, (), ttl_seconds=ttl_seconds, lease_seconds=1)

    async def finish_and_begin_requests(
        self,
        finished: Sequence[tuple[str, str, StoredResponse]],
        abandoned: Sequence[Abandon],
        begin: Sequence[tuple[str, str]],
        *,
        ttl_seconds: float,
        lease_seconds: float,
        round_id: str | None = None,
    ) -> list[RequestClaim]:
        ttl = records.millis(ttl_seconds, "ttl_seconds") / 1000
        lease = records.millis(lease_seconds, "lease_seconds") / 1000
        rows = [(records.request_key(k), records.response_record(fp, response)) for k, fp, response in finished]
        dropped = [(records.request_key(key), token) for key, token in records.abandons(abandoned)]
        tokens = records.marker_tokens(round_id, len(begin))
        named = [
            (records.request_key(key), fingerprint, token)
            for (key, fingerprint), token in zip(begin, tokens, strict=True)
        ]
        if not (rows or dropped or named):
            return []

        def run(db: sqlite3.Connection, now: float) -> list[RequestClaim]:
            for name, record in rows:
                _put(db, name, record, now + ttl)
            for name, token in dropped:
                _abandon(db, name, token, now)
            return [_begin(db, name, fingerprint, token, now=now, lease=lease) for name, fingerprint, token in named]

        return await self._write(run, len(rows) + len(named))

    async def _write[T](self, body: Callable[[sqlite3.Connection, float], T], added: int) -> T:
        """Run ``body`` in one BEGIN IMMEDIATE transaction in the store's thread, then sweep at least
        twice the rows it may have ``added`` of the expired ones."""
        self.transactions += 1
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._transaction, body, added)

    def _transaction[T](self, body: Callable[[sqlite3.Connection, float], T], added: int) -> T:
        try:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                result = body(db, now)
                _sweep(db, now, max(SWEEP_MIN_ROWS, 2 * added))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.DatabaseError, OSError) as error:  # locked past the busy timeout, disk full, I/O
            if isinstance(error, sqlite3.ProgrammingError):
                raise  # a bug of ours, not the store's state
            raise StoreUnavailableError(f"SQLite store {self._path}: {error}") from error
        return result

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
            try:
                _use_wal(db, self._busy_timeout)
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
            except BaseException:
                db.close()
                raise
            self._connection = db
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _use_wal(db: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch the file to WAL. While another connection is switching a new file, SQLite answers
    "database is locked" at once, without its busy handler (two processes sharing a new store, such
    as `conveyor dev`'s writer and processor, hit it about one time in fifty): tried again until the
    busy timeout, like any other lock."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(WAL_RETRY_SECONDS)
        else:
            return


def _live(db: sqlite3.Connection, key: str, now: float) -> dict[str, str] | None:
    row = db.execute("SELECT value FROM records WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _begin(
    db: sqlite3.Connection, name: str, fingerprint: str, token: str, *, now: float, lease: float
) -> RequestClaim:
    """``token``: the in-flight marker's (SQLite calls are never retried, so unlike Redis's script
    this never finds its own; a marker with or without a token is read alike)."""
    found = db.execute("SELECT value, expires_at FROM records WHERE key = ? AND expires_at > ?", (name, now)).fetchone()
    if found is None:
        _put(db, name, records.in_flight_record(fingerprint, token), now + lease)
        return RequestClaim(RequestState.NEW, token=token)
    value, expires_at = found
    if json.loads(value)["state"] == records.IN_FLIGHT:
        return RequestClaim(RequestState.IN_FLIGHT, retry_after=max(0.0, expires_at - now))
    return records.replay(value, fingerprint)


def _abandon(db: sqlite3.Connection, name: str, token: str | None, now: float) -> None:
    current = _live(db, name, now)
    if current is not None and current["state"] == records.IN_FLIGHT and token in (None, current.get("token")):
        db.execute("DELETE FROM records WHERE key = ?", (name,))


def _owned(record: dict[str, str] | None, owner: str) -> bool:
    return record is not None and record["state"] == records.CLAIMED and record.get("owner") == owner


def _put(db: sqlite3.Connection, key: str, value: str, expires_at: float) -> None:
    db.execute("INSERT OR REPLACE INTO records (key, value, expires_at) VALUES (?, ?, ?)", (key, value, expires_at))


def _sweep(db: sqlite3.Connection, now: float, limit: int) -> None:
    db.execute(
        "DELETE FROM records WHERE key IN (SELECT key FROM records WHERE expires_at <= ? LIMIT ?)",
        (now, limit),
    )
