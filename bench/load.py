"""HTTP load from the benchmark process (aiohttp): closed loops of N clients, or a steady rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

BODY = {"body": {"order": 1, "payload": "x" * 200}, "attributes": {"tenant": "bench"}}


@dataclass
class Tally:
    """What the clients saw: 2xx answers, other answers (by status; 0 = no answer), latencies."""

    ok: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def note(self, status: int, started: float) -> None:
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.errors[status] = self.errors.get(status, 0) + 1


async def post(session: aiohttp.ClientSession, url: str, body: Any, tally: Tally) -> bool:
    started = time.perf_counter()
    try:
        async with session.post(url, json=body) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    tally.note(status, started)
    return 200 <= status < 300


async def closed_loop(url: str, clients: int, seconds: float) -> Tally:
    """``clients`` loops, each posting the next message once the last one is answered."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=timeout) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                await post(session, url, BODY, tally)

        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(client())
    return tally


async def steady(url: str, rate: float, seconds: float, body: Callable[[int], Any]) -> tuple[Tally, set[int]]:
    """Post ``body(i)`` at ``rate`` per second for ``seconds``, whatever the answers take (open
    loop); the sequence numbers answered 2xx."""
    tally, accepted = Tally(), set[int]()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def one(seq: int) -> None:
            if await post(session, url, body(seq), tally):
                accepted.add(seq)

        start = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for seq in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
                group.create_task(one(seq))
    return tally, accepted
