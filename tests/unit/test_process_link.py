"""The link between the supervisor and a child, both ends in this process over a real socket pair."""

from __future__ import annotations

import asyncio
import socket

import pytest

from conveyor.processor.engine.health import Health
from conveyor.processor.process.link import CHILD_ENV, ParentLink, StatusReporter, read_status
from tests.unit.engine_support import until


def test_the_marker_is_read_once_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHILD_ENV, "3:17")
    assert ParentLink.from_environment() == ParentLink(3, 17)
    assert ParentLink.from_environment() is None  # the handler's own subprocesses are not children


async def test_the_child_reports_each_change_of_readiness_and_stops_when_the_supervisor_is_gone() -> None:
    # GIVEN a child's reporter on one end of a socket pair, the supervisor's reader on the other
    ours, theirs = socket.socketpair()
    stopping = asyncio.Event()
    health = Health(stopping)
    gone: list[bool] = []
    reporter = StatusReporter(ParentLink(0, theirs.detach()), health, lambda: gone.append(True))
    serving = asyncio.create_task(reporter.serve())
    reader, writer = await asyncio.open_connection(sock=ours)
    seen: list[dict[str, object]] = []
    reading = asyncio.create_task(read_status(reader, seen.append))
    # WHEN the child becomes ready, then its polls fail
    await until(lambda: len(seen) == 1)
    health.poll_succeeded()
    await until(lambda: len(seen) == 2)
    health.poll_failed()
    await until(lambda: len(seen) == 3)
    # THEN the supervisor saw each state once, in order
    assert [(s["ready"], s["poll_failures_in_row"]) for s in seen] == [(False, 0), (True, 0), (False, 1)]
    assert gone == []
    # WHEN the supervisor's end closes (the supervisor was killed)
    writer.close()
    await reading
    # THEN the child is told to stop (once), and the reporter ends when closed
    await until(lambda: gone == [True])
    stopping.set()
    reporter.close()
    await asyncio.wait_for(serving, 5)
    assert gone == [True]
