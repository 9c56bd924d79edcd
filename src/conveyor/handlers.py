"""Handlers shipped with Conveyor. ``demo`` is what `conveyor dev` runs."""

from __future__ import annotations

import asyncio
import functools

import structlog

from conveyor.message import Message
from conveyor.settings import ProcessorSettings

log = structlog.get_logger("conveyor.handlers")


async def demo(message: Message) -> None:
    """Parse the body as JSON (a body that is not JSON is dead-lettered), simulate a real job's
    work (CONVEYOR_DEMO_WORK_SECONDS, default 0.1 s) and log the message."""
    message.json()
    await asyncio.sleep(_work_seconds())
    log.info(
        "demo_handled",
        body=message.body[:200],  # the JSON text as it came, not a Python repr of the parsed value
        receive_count=message.receive_count,
        attributes=message.attributes,
        **({"payload_location": message.payload_location, "bytes": len(message.body)} if message.offloaded else {}),
    )


@functools.cache
def _work_seconds() -> float:
    """CONVEYOR_DEMO_WORK_SECONDS, validated with the processor's other settings (read once)."""
    return ProcessorSettings().demo_work_seconds
