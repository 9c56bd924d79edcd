"""The two stores behind one test interface, for the contract suite and the store-specific tests."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio

from conveyor.idempotency import IdempotencyStore
from conveyor.idempotency.redis_store import RedisStore, redis_client
from conveyor.idempotency.sqlite_store import SqliteStore


@dataclass
class FakeClock:
    """Wall-clock seconds that only move when a test says so."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """Stores of one kind over one shared data set, and what a test needs to look at them."""

    kind: str
    exits: AsyncExitStack
    opener: Callable[[], IdempotencyStore]
    remaining: Callable[[str], Awaitable[float | None]]  # seconds a record (full key) has left; None: absent
    passes: Callable[[float], None]  # SQLite: move the clock; Redis: real time passes while polling
    counters: list[Callable[[], int]] = field(default_factory=list)

    async def store(self) -> IdempotencyStore:
        """Another store object (another connection / client) on the same data."""
        return await self.exits.enter_async_context(self.opener())

    def round_trips(self) -> int:
        return sum(counter() for counter in self.counters)


async def sqlite_backend(path: Path, exits: AsyncExitStack) -> Backend:
    clock = FakeClock()

    def opener() -> IdempotencyStore:
        store = SqliteStore(path, clock=clock)
        backend.counters.append(lambda: store.transactions)
        return store

    async def remaining(key: str) -> float | None:
        with closing(sqlite3.connect(path)) as db:  # a plain look at the file, outside any store
            row = db.execute("SELECT expires_at FROM records WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] <= clock() else float(row[0]) - clock()

    backend = Backend("sqlite", exits, opener, remaining, clock.advance)
    return backend


async def redis_backend(url: str, exits: AsyncExitStack) -> Backend:
    raw = redis.asyncio.Redis.from_url(url)
    exits.push_async_callback(raw.aclose)

    def opener() -> IdempotencyStore:
        client = redis_client(url)
        calls = counting(client)
        backend.counters.append(lambda: calls[0])
        return RedisStore(client)

    async def remaining(key: str) -> float | None:
        left = await raw.pttl(key)
        return None if left < 0 else left / 1000

    backend = Backend("redis", exits, opener, remaining, lambda _seconds: None)
    return backend


def counting(client: redis.asyncio.Redis) -> list[int]:
    """Count the commands the client sends (each is one round trip; a script call is one EVALSHA)."""
    calls = [0]
    send = client.execute_command

    async def execute_command(*args: Any, **options: Any) -> Any:
        calls[0] += 1
        return await send(*args, **options)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    client.execute_command = execute_command  # type: ignore[method-assign]
    return calls


async def eventually[T](probe: Callable[[], Awaitable[T]], expected: T, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a deadline, not a cancel scope
    """Poll ``probe`` until it gives ``expected`` (never a bare sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := await probe()) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"still {got!r}, not {expected!r}, after {timeout} s")
        await asyncio.sleep(0.02)
