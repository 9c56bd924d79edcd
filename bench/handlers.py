"""The benchmark's handler: a real job's ~0.1 s of waiting, and nothing else (no per-message log)."""

from __future__ import annotations

import asyncio
import os

from conveyor import Message

SLEEP = float(os.environ.get("CONVEYOR_BENCH_SLEEP", "0.1"))


async def sleep(message: Message) -> None:
    await asyncio.sleep(SLEEP)
