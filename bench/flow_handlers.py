"""The flow-control benchmark's handlers (bench/scenarios/flow.py): a downstream that is down for a
while, one that only counts starts, and one that admits 30 calls a second.

Each scenario has a Conveyor handler (async, takes a :class:`~conveyor.Message`) and a ``*_sync``
twin for the naive consumer (takes the body). Every call appends one ``event seq started ended pid``
line to the file named by ``CONVEYOR_BENCH_CALLS_FILE`` (one short O_APPEND write: lines of
concurrent calls and of several processes do not interleave), ``event`` being ``ok``, ``fail`` or
``throttled``; the bodies are ``{"seq": n}``.

Settings, read when the module is imported:

- ``CONVEYOR_BENCH_DOWN_UNTIL``: epoch seconds; ``outage`` fails every call (ConnectionError) until then.
- ``CONVEYOR_BENCH_SLEEP``: seconds an admitted call takes (0.1).
- ``CONVEYOR_BENCH_DOWNSTREAM_RATE`` / ``CONVEYOR_BENCH_DOWNSTREAM_BURST``: the token bucket of
  ``throttled`` (30/s, 30).
- ``CONVEYOR_BENCH_THROTTLE_AFTER``: the ``after`` of ``conveyor.Throttle`` (1.0).
- ``CONVEYOR_BENCH_PLAIN_ERRORS``: ``1`` raises ``RuntimeError("429")`` instead of Throttle, as a
  handler written before flow control would.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import conveyor
from conveyor import Message

CALLS_FILE = os.environ.get("CONVEYOR_BENCH_CALLS_FILE", "")
DOWN_UNTIL = float(os.environ.get("CONVEYOR_BENCH_DOWN_UNTIL", "0"))
SLEEP = float(os.environ.get("CONVEYOR_BENCH_SLEEP", "0.1"))
RATE = float(os.environ.get("CONVEYOR_BENCH_DOWNSTREAM_RATE", "30"))
BURST = float(os.environ.get("CONVEYOR_BENCH_DOWNSTREAM_BURST", "30"))
THROTTLE_AFTER = float(os.environ.get("CONVEYOR_BENCH_THROTTLE_AFTER", "1.0"))
PLAIN_ERRORS = os.environ.get("CONVEYOR_BENCH_PLAIN_ERRORS", "") == "1"


class DownstreamError(RuntimeError):
    """What a throttled call raises where conveyor.Throttle is not used (or does not exist yet)."""


def note(event: str, body: str, started: float) -> None:
    seq = json.loads(body)["seq"]
    line = f"{event} {seq} {started!r} {time.time()!r} {os.getpid()}\n".encode()
    descriptor = os.open(CALLS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


class TokenBucket:
    """The downstream's admission: ``rate`` calls a second, up to ``burst`` at once. A lock, not an
    asyncio primitive: the naive consumer calls it from threads (and take() never awaits)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


DOWNSTREAM = TokenBucket(RATE, BURST)


def over_capacity() -> Exception:
    """conveyor.Throttle where it exists and is wanted; the plain 429 error otherwise. Looked up at
    run time: the benchmark runs against processors from before flow control too."""
    throttle = getattr(conveyor, "Throttle", None)
    if throttle is None or PLAIN_ERRORS:
        return DownstreamError("429")
    error: Exception = throttle(after=THROTTLE_AFTER)
    return error


# outage: every call fails until DOWN_UNTIL, then each takes SLEEP and succeeds


async def outage(message: Message) -> None:
    started = time.time()
    if started < DOWN_UNTIL:
        note("fail", message.body, started)
        raise ConnectionError("downstream is down")
    await asyncio.sleep(SLEEP)
    note("ok", message.body, started)


def outage_sync(body: str) -> None:
    started = time.time()
    if started < DOWN_UNTIL:
        note("fail", body, started)
        raise ConnectionError("downstream is down")
    time.sleep(SLEEP)
    note("ok", body, started)


# steady: no downstream limit; the calls' start times are what the rate scenario reads


async def steady(message: Message) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP)
    note("ok", message.body, started)


def steady_sync(body: str) -> None:
    started = time.time()
    time.sleep(SLEEP)
    note("ok", body, started)


# throttled: a downstream of RATE calls a second; over it, the call is refused at once


async def throttled(message: Message) -> None:
    started = time.time()
    if not DOWNSTREAM.take():
        note("throttled", message.body, started)
        raise over_capacity()
    await asyncio.sleep(SLEEP)
    note("ok", message.body, started)


def throttled_sync(body: str) -> None:
    started = time.time()
    if not DOWNSTREAM.take():
        note("throttled", body, started)
        raise over_capacity()
    time.sleep(SLEEP)
    note("ok", body, started)
