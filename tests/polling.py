"""Waiting for something in a test: poll with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(
    condition: Callable[[], bool],
    timeout: float = 5.0,  # noqa: ASYNC109 - a deadline to fail at, not a cancel scope
    what: str = "condition",
    interval: float = 0.01,
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(interval)
