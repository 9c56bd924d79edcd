"""`queue-processor` with ``CONVEYOR_PROCESSES`` above 1: N engine processes under one supervisor.

The supervisor checks what would make every child fail the same way (the handler, the ops port, the
queue) once, then starts N children (:mod:`conveyor.processor.process.children`) and keeps them running:
a child that ends is logged (exit code or signal, whatever its number) and started again after a
short delay; after several fast failures in a row it gives up (:mod:`conveyor.processor.process.restarts`).
The messages a dead child held come back after their visibility timeout. It serves the one ops
port: ``/readyz`` is ready when every child is, ``/metrics`` adds up the children's metrics
(prometheus-client's multiprocess mode, in a directory it owns and removes).

Signals: the first SIGTERM/SIGINT is passed on, once, to every child, each of which stops
gracefully as a single process does; the supervisor waits for all and exits 0 (or the worst child's
code). A second stops every child at once (exit 130, within about 2 s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from conveyor import metrics_dir
from conveyor.processor.process.children import Child, EngineProcess
from conveyor.processor.process.ops import ops_server
from conveyor.processor.process.restarts import GiveUp, RestartPolicy, Restarts
from conveyor.processor.process.signals import EXIT_HARD_STOP, on_two_signals
from conveyor.processor.process.startup import (
    EXIT_FAILURE,
    bind_ops_socket,
    read_queues,
)
from conveyor.processor.user_code import load_user_code
from conveyor.settings import ProcessorSettings
from conveyor.sqs.client import sqs_client

log = structlog.get_logger("conveyor.processor")

type Spawn = Callable[[int], Awaitable[Child]]


@dataclass
class Place:
    """One of the N places a child runs in; its child changes when one is restarted."""

    index: int
    child: Child | None = None
    state: str = "starting"  # starting, running, restarting, stopped
    restarts: int = 0
    exit_code: int = 0  # the last child's, once the supervisor is stopping
    exits: list[int] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.child is not None and self.child.status.get("ready") is True

    def describe(self) -> dict[str, object]:
        child = self.child
        return {
            "process": self.index,
            "pid": child.pid if child else None,
            "state": self.state,
            "restarts": self.restarts,
            **(child.status if child else {}),
            "ready": self.ready,
        }


class Supervisor:
    def __init__(
        self,
        count: int,
        spawn: Spawn,
        *,
        policy: RestartPolicy = RestartPolicy(),  # noqa: B008 - frozen: one shared default is fine
        on_exit: Callable[[int], None] = lambda pid: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.places = [Place(index) for index in range(count)]
        self.stopping = asyncio.Event()
        self.failure: str | None = None  # why it gave up
        self._spawn = spawn
        self._policy = policy
        self._on_exit = on_exit  # a child's pid, once it has ended
        self._clock = clock
        self._sleep = sleep

    async def run(self) -> int:
        """Keep every place's child running until :meth:`stop`; the exit code."""
        async with asyncio.TaskGroup() as group:
            for place in self.places:
                group.create_task(self._keep(place))
        if self.failure is not None:
            return EXIT_FAILURE
        return max(place.exit_code for place in self.places)

    def stop(self) -> None:
        """Every child stops gracefully (one SIGTERM each); nothing is restarted any more."""
        if not self.stopping.is_set():
            self.stopping.set()
            self.signal_all(signal.SIGTERM)

    def signal_all(self, sig: int) -> None:
        for place in self.places:
            if place.child is not None:
                place.child.signal(sig)

    @property
    def ready(self) -> bool:
        return not self.stopping.is_set() and all(place.ready for place in self.places)

    def describe(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "stopping": self.stopping.is_set(),
            "not_ready": [place.index for place in self.places if not place.ready],
            "processes": [place.describe() for place in self.places],
        }

    async def _keep(self, place: Place) -> None:
        restarts = Restarts(self._policy)
        while not self.stopping.is_set():
            code, lived = await self._run_child(place)
            if self.stopping.is_set():
                place.exit_code = _code_after_stop(code)
                break
            decision = restarts.after_exit(lived)
            if isinstance(decision, GiveUp):
                self.failure = (
                    f"process {place.index} failed {decision.failures} times in a row within "
                    f"{self._policy.stable_seconds:g} s of starting (last: {describe_exit(code)}); giving up"
                )
                self.stop()
                break
            place.state, place.restarts = "restarting", place.restarts + 1
            log.warning("process_restarting", process=place.index, in_seconds=decision.delay)
            await self._pause(decision.delay)
        place.state = "stopped"

    async def _run_child(self, place: Place) -> tuple[int | None, float]:
        """Start a child and wait for its end: (its exit code, or None if it could not start; how long
        it lived)."""
        started = self._clock()
        try:
            child = await self._spawn(place.index)
        except OSError as exc:
            log.error("process_start_failed", process=place.index, error=str(exc))
            return None, 0.0
        place.child, place.state = child, "running"
        log.info("process_started", process=place.index, pid=child.pid)
        if self.stopping.is_set():  # the stop came while it was starting
            child.signal(signal.SIGTERM)
        try:
            code = await child.wait()
        except asyncio.CancelledError:
            # The supervisor is going down without its stop (a sibling's task failed, or the run was
            # cancelled): the child must not be left running, orphaned, in its own process group.
            child.signal(signal.SIGTERM)
            raise
        finally:
            place.child = None
            self._on_exit(child.pid)
        place.exits.append(code)
        lived = self._clock() - started
        if self.stopping.is_set():
            log.info("process_stopped", process=place.index, pid=child.pid, exit=describe_exit(code))
        else:
            log.error("process_died", process=place.index, pid=child.pid, exit=describe_exit(code),
                      lived_seconds=round(lived, 3))  # fmt: skip
        return code, lived

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the stop begins."""
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()


def describe_exit(code: int | None) -> str:
    """How a child ended, for the logs and the give-up line: any exit code, any signal number."""
    if code is None:
        return "could not start"
    if code >= 0:
        return f"exit code {code}"
    number = -code
    try:
        return f"killed by {signal.Signals(number).name}"
    except ValueError:
        pass  # most real-time signals, and the two the C library keeps for itself, have no member
    rtmin, rtmax = getattr(signal, "SIGRTMIN", None), getattr(signal, "SIGRTMAX", None)
    if rtmin is not None and rtmax is not None and rtmin < number < rtmax:
        return f"killed by signal {number} (SIGRTMIN+{number - rtmin})"
    return f"killed by signal {number}"


def _code_after_stop(code: int | None) -> int:
    """A child's exit code as the supervisor's own. Dead of the SIGTERM the supervisor sent, a child
    had not yet set its signal handlers, so it held no message: a clean stop."""
    if code is None or code == -signal.SIGTERM:
        return 0
    return 128 - code if code < 0 else code


def supervise(settings: ProcessorSettings) -> int:
    """Run ``settings.processes`` engine processes until a signal stops them; the exit code.
    A bad handler, a port in use or an unusable queue fail here, once, with one line."""
    load_user_code(settings.app, settings.handler)
    sock = bind_ops_socket(settings.processor_host, settings.processor_port)
    with sock, metrics_dir.owned_dir("conveyor-processor-metrics-") as path:
        return asyncio.run(_supervise(settings, sock, path))


async def _supervise(settings: ProcessorSettings, sock: socket.socket, path: Path) -> int:
    async with sqs_client(settings) as client:
        await read_queues(client, settings)
    env = {**os.environ, metrics_dir.ENV: str(path)}
    supervisor = Supervisor(
        settings.processes,
        lambda index: EngineProcess.start(index, env),
        on_exit=lambda pid: metrics_dir.forget(pid, path),
    )
    server = ops_server(supervisor, metrics_dir.aggregate_registry(path))
    ops = asyncio.create_task(server.serve(sockets=[sock]))
    _handle_signals(supervisor, path)
    log.info("supervisor_started", processes=settings.processes, pid=os.getpid())
    try:
        code = await supervisor.run()
    finally:
        server.should_exit = True
        await ops
    if supervisor.failure is not None:
        print(f"queue-processor: {supervisor.failure}", file=sys.stderr)
    log.info("supervisor_stopped", exit_code=code)
    return code


def _handle_signals(supervisor: Supervisor, path: Path) -> None:
    # A second signal gives each child its second SIGTERM (it stops at once, within its own 2 s);
    # whatever is left then is killed.
    on_two_signals(
        supervisor.stop,
        lambda: supervisor.signal_all(signal.SIGTERM),
        lambda: _kill_all_and_exit(supervisor, path),
    )


def _kill_all_and_exit(supervisor: Supervisor, path: Path) -> None:
    supervisor.signal_all(signal.SIGKILL)
    metrics_dir.remove(path)
    sys.stderr.flush()
    os._exit(EXIT_HARD_STOP)
