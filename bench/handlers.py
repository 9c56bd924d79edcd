"""The benchmarks' handlers: a real job's ~0.1 s of waiting (``sleep``), or ~10 ms of CPU (``cpu``), and
nothing else (no per-message log).

``sleep`` and ``record`` are Conveyor handlers (``CONVEYOR_HANDLER=bench.handlers:sleep``);
``sleep_sync`` and ``record_sync`` are the same for the naive consumer, which passes the body.
``record`` notes, before it waits, when it started and when the message was posted (the
``posted_at`` the load generator put in the body): one ``seq posted started`` line per call,
appended to the file named by ``CONVEYOR_BENCH_LATENCY_FILE``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time

from conveyor import Message

SLEEP = float(os.environ.get("CONVEYOR_BENCH_SLEEP", "0.1"))
LATENCY_FILE = os.environ.get("CONVEYOR_BENCH_LATENCY_FILE", "")


async def sleep(message: Message) -> None:
    await asyncio.sleep(SLEEP)


def sleep_sync(body: str) -> None:
    time.sleep(SLEEP)


async def record(message: Message) -> None:
    note_start(message.body, time.time())
    await asyncio.sleep(SLEEP)


def record_sync(body: str) -> None:
    note_start(body, time.time())
    time.sleep(SLEEP)


def note_start(body: str, started: float) -> None:
    """Append ``seq posted started`` (one short write with O_APPEND: lines of concurrent calls and
    processes do not interleave)."""
    data = json.loads(body)
    line = f"{data['seq']} {data['posted_at']!r} {started!r}\n".encode()
    descriptor = os.open(LATENCY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


CPU_ROUNDS = int(os.environ.get("CONVEYOR_BENCH_CPU_ROUNDS", "32000"))  # about 10 ms here


def burn(rounds: int) -> bytes:
    """CPU in the interpreter, holding the GIL: one small hash per round (no I/O, no GIL release)."""
    digest = b"conveyor"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest


async def cpu(message: Message) -> None:
    """A CPU-bound handler: about 10 ms of work per message (CONVEYOR_BENCH_CPU_ROUNDS rounds)."""
    burn(CPU_ROUNDS)
