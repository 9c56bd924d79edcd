"""Messages received and not yet started, and the order in which workers take them.

Two kinds, one interface:

- :class:`AnyOrder` (standard queues): first come, first served; any worker takes any message.
- :class:`ByGroup` (FIFO queues): the messages of one ``MessageGroupId`` are taken strictly one
  after another, in the order SQS delivered them; different groups are taken in parallel. A group
  is *busy* while one of its messages is being handled; :meth:`ByGroup.done` frees it, and when the
  handled message failed (it will be retried) the group *stops*: its later messages are handed back
  to be released, so that SQS delivers the group again starting with the failed message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from conveyor.processor.engine.lease import Lease


class Buffer(Protocol):
    def put(self, lease: Lease) -> None:
        """A message just received."""

    async def take(self, most: int) -> list[Lease]:
        """Wait for at least one message, then take up to ``most`` that may be handled now."""

    def done(self, leases: Iterable[Lease], stopped_groups: set[str]) -> list[Lease]:
        """``leases`` were handled; returns the buffered messages to release (FIFO: the rest of
        each stopped group)."""

    def drain(self) -> list[Lease]:
        """Take the messages not started that wait for nothing (shutdown), in the order they would
        have run."""

    def qsize(self) -> int:
        """Messages waiting."""

    def waiting(self, group: str) -> bool:
        """FIFO: messages of ``group`` wait here (not started)."""


class AnyOrder:
    """A standard queue's buffer: no order to keep."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Lease] = asyncio.Queue()

    def put(self, lease: Lease) -> None:
        self._queue.put_nowait(lease)

    async def take(self, most: int) -> list[Lease]:
        leases = [await self._queue.get()]
        while len(leases) < most and not self._queue.empty():
            leases.append(self._queue.get_nowait())
        return leases

    def done(self, leases: Iterable[Lease], stopped_groups: set[str]) -> list[Lease]:
        return []

    def drain(self) -> list[Lease]:
        leases = []
        while not self._queue.empty():
            leases.append(self._queue.get_nowait())
        return leases

    def qsize(self) -> int:
        return self._queue.qsize()

    def waiting(self, group: str) -> bool:
        return False


class ByGroup:
    """A FIFO queue's buffer: one message per group at a time, in delivery order."""

    def __init__(self) -> None:
        self._pending: dict[str, deque[Lease]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()  # groups with a message waiting, none running
        self._queued: set[str] = set()  # the groups in _ready
        self._busy: set[str] = set()

    def put(self, lease: Lease) -> None:
        group = lease.group
        self._pending.setdefault(group, deque()).append(lease)
        if group not in self._busy:
            self._make_ready(group)

    async def take(self, most: int) -> list[Lease]:
        """A single handler gets the next message of one group; a batch handler gets whole runs of
        several groups (each group's messages together, in order), up to ``most``."""
        groups = [await self._ready.get()]
        leases = self._take_run(groups[0], most)
        while len(leases) < most and not self._ready.empty():
            group = self._ready.get_nowait()
            leases += self._take_run(group, most - len(leases))
        return leases

    def _take_run(self, group: str, most: int) -> list[Lease]:
        """The first ``most`` waiting messages of ``group`` (a single handler: most is 1); the group
        is busy until :meth:`done`."""
        self._queued.discard(group)
        self._busy.add(group)
        run = self._pending[group]
        leases = [run.popleft() for _ in range(min(most, len(run)))]
        if not run:
            del self._pending[group]
        return leases

    def done(self, leases: Iterable[Lease], stopped_groups: set[str]) -> list[Lease]:
        to_release: list[Lease] = []
        for group in dict.fromkeys(lease.group for lease in leases):
            self._busy.discard(group)
            if group in stopped_groups:
                to_release.extend(self._pending.pop(group, ()))
            elif self._pending.get(group):
                self._make_ready(group)
        return to_release

    def drain(self) -> list[Lease]:
        """The waiting messages of the groups with nothing running. A busy group's messages stay:
        they go back after its running message, with the same delay (see ``done``)."""
        idle = [group for group in self._pending if group not in self._busy]
        leases = [lease for group in idle for lease in self._pending.pop(group)]
        while not self._ready.empty():
            self._ready.get_nowait()
        self._queued.clear()
        return leases

    def qsize(self) -> int:
        return sum(len(run) for run in self._pending.values())

    def waiting(self, group: str) -> bool:
        return bool(self._pending.get(group))

    def _make_ready(self, group: str) -> None:
        if group not in self._queued:
            self._queued.add(group)
            self._ready.put_nowait(group)
