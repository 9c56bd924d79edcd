"""An engine process started by the supervisor: the same program, ``python -P -m conveyor.processor``,
marked as a child by its link (see :mod:`conveyor.processor.process.link`).

A plain subprocess rather than ``multiprocessing``: the child is exactly what ``queue-processor``
runs with one process (same code path, signals, exit codes and one-line errors), nothing is pickled,
no helper process (multiprocessing's resource tracker) comes along, and its exit status is the
ordinary one (a negative code names the signal that killed it). ``-P`` keeps the working directory
off ``sys.path``, as it is for the console script, so the child imports the same handler module as
the supervisor checked. Each child has a process group of its own: Ctrl-C in a terminal reaches the
supervisor only, which sends each child one SIGTERM (two signals would make a child stop at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Mapping
from typing import Protocol

from conveyor.processor.process.link import CHILD_ENV, child_marker, read_status


class Child(Protocol):
    """What the supervisor needs of a child process (tests use fakes)."""

    @property
    def pid(self) -> int: ...

    @property
    def status(self) -> dict[str, object]: ...

    async def wait(self) -> int: ...

    def signal(self, sig: int) -> None: ...


class EngineProcess:
    def __init__(self, process: asyncio.subprocess.Process, link: socket.socket) -> None:
        self._process = process
        self._link = link
        self.status: dict[str, object] = {}  # the last state the child reported

    @classmethod
    async def start(cls, index: int, env: Mapping[str, str]) -> EngineProcess:
        ours, theirs = socket.socketpair()
        with theirs:  # the child has its own copy; ours must not keep its end open
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "conveyor.processor",
                env={**env, CHILD_ENV: child_marker(index, theirs.fileno())},
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL, process_group=0,
            )  # fmt: skip
        return cls(process, ours)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> int:
        """Follow the child's reports until it exits; its exit code (negative: killed by a signal).
        The process's end, not the stream's, is what counts: a handler's own subprocess could hold
        the stream open."""
        reader, writer = await asyncio.open_connection(sock=self._link)
        try:
            async with asyncio.TaskGroup() as group:
                reading = group.create_task(read_status(reader, self._update))
                code = await self._process.wait()
                reading.cancel()
        finally:
            writer.close()
        return code

    def _update(self, state: dict[str, object]) -> None:
        self.status = state

    def signal(self, sig: int) -> None:
        """Signal the child if it has not been reaped yet. ``os.kill`` rather than the process
        object's method, which would reap it behind the event loop's back (the last-resort kill
        comes from a thread)."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, sig)
