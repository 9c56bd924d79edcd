"""The benchmarks' handlers: a real job's ~0.1 s of waiting (``sleep``), or ~10 ms of CPU (``cpu``), and
nothing else (no per-message log)."""

from __future__ import annotations

import asyncio
import hashlib
import os

from conveyor import Message

SLEEP = float(os.environ.get("CONVEYOR_BENCH_SLEEP", "0.1"))


async def sleep(message: Message) -> None:
    await asyncio.sleep(SLEEP)


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
