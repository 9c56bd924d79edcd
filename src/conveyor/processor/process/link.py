"""The link between the supervisor and one engine process it started (``CONVEYOR_PROCESSES`` > 1).

One end of a socket pair is passed to the child (its descriptor named by ``_CONVEYOR_CHILD``, with
the child's index). The child writes a JSON line each time its readiness changes; the supervisor
keeps the last one for its ``/readyz``. Nothing flows the other way: the end of the stream tells the
child its supervisor is gone (killed), and the child then stops gracefully rather than run on as an
orphan. No port: readiness never leaves the two processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from conveyor.processor.engine.health import Health

CHILD_ENV = "_CONVEYOR_CHILD"  # "<index>:<fd>"; internal, set by the supervisor only
REPORT_INTERVAL_SECONDS = 0.1

log = structlog.get_logger("conveyor.processor")


def child_marker(index: int, fd: int) -> str:
    return f"{index}:{fd}"


@dataclass(frozen=True, slots=True)
class ParentLink:
    index: int
    fd: int

    @classmethod
    def from_environment(cls) -> ParentLink | None:
        """The link when this process is a supervisor's child (the variable is removed, so that the
        handler's own subprocesses do not take themselves for children)."""
        value = os.environ.pop(CHILD_ENV, None)
        if value is None:
            return None
        index, _, fd = value.partition(":")
        return cls(int(index), int(fd))


class StatusReporter:
    """The child's side: in place of an ops server, report readiness to the supervisor."""

    def __init__(self, link: ParentLink, health: Health, on_parent_gone: Callable[[], None]) -> None:
        self._link = link
        self._health = health
        self._on_parent_gone = on_parent_gone
        self._closed = asyncio.Event()
        self._gone = False

    def close(self) -> None:
        self._closed.set()

    async def serve(self) -> None:
        os.set_inheritable(self._link.fd, False)
        reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=self._link.fd))
        try:
            async with asyncio.TaskGroup() as group:
                watch = group.create_task(self._watch(reader))
                await self._report(writer)
                watch.cancel()
        finally:
            writer.close()

    async def _report(self, writer: asyncio.StreamWriter) -> None:
        last: dict[str, object] | None = None
        while not self._closed.is_set():
            state = self._state()
            if state != last:
                try:
                    writer.write(json.dumps(state).encode() + b"\n")
                    await writer.drain()
                except OSError:
                    self._parent_gone()
                    return
                last = state
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), REPORT_INTERVAL_SECONDS)

    def _state(self) -> dict[str, object]:
        """What changes: readiness and why (the time since the last poll changes all the time)."""
        state = self._health.describe()
        del state["seconds_since_last_poll"]
        return state

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            await reader.read()  # nothing is ever sent: this returns at the end of the stream
        self._parent_gone()

    def _parent_gone(self) -> None:
        if not self._gone and not self._closed.is_set():
            self._gone = True
            log.warning("supervisor_gone", action="graceful stop")
            self._on_parent_gone()


async def read_status(reader: asyncio.StreamReader, on_status: Callable[[dict[str, object]], None]) -> None:
    """The supervisor's side: pass on each state the child reports, until the stream ends."""
    with contextlib.suppress(OSError):
        while line := await reader.readline():
            try:
                state = json.loads(line)
            except ValueError:
                continue
            if isinstance(state, dict):
                on_status(state)
