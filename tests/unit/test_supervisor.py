"""The supervisor of CONVEYOR_PROCESSES > 1 with fake children: restarts, backoff, giving up, the
graceful stop and readiness (no real process; the real ones are in tests/e2e/test_processes.py)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field

import pytest
import structlog

from conveyor.processor.process.restarts import GiveUp, Restart, RestartPolicy, Restarts
from conveyor.processor.process.supervisor import Supervisor, describe_exit
from tests.unit.engine_support import until

POLICY = RestartPolicy(stable_seconds=10, give_up_after=5, first_delay=0.5, max_delay=8)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Life:
    """How a fake child behaves: dies by itself after ``lived`` seconds with ``code``, or (code None)
    runs until signalled; a SIGTERM makes it exit with ``on_term``."""

    code: int | None = None
    lived: float = 0.0
    on_term: int = 0


@dataclass
class FakeChild:
    pid: int
    life: Life
    clock: Clock
    signals: list[int] = field(default_factory=list)
    status: dict[str, object] = field(default_factory=dict)
    _exit: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    async def wait(self) -> int:
        if self.life.code is not None:
            self.clock.now += self.life.lived
            return self.life.code
        self.status = {"ready": True}
        return await self._exit

    def signal(self, sig: int) -> None:
        self.signals.append(sig)
        if not self._exit.done():
            self._exit.set_result(self.life.on_term if sig == signal.SIGTERM else -sig)


class Children:
    """Spawns fake children place by place from scripted lives (the last one repeats)."""

    def __init__(self, clock: Clock, lives: dict[int, list[Life]]) -> None:
        self.clock = clock
        self.lives = lives
        self.started: dict[int, list[FakeChild]] = {index: [] for index in lives}
        self.ended: list[int] = []
        self._pids = iter(range(100, 10_000))

    async def spawn(self, index: int) -> FakeChild:
        started = self.started[index]
        script = self.lives[index]
        child = FakeChild(next(self._pids), script[min(len(started), len(script) - 1)], self.clock)
        started.append(child)
        return child


def supervisor_for(children: Children, clock: Clock) -> Supervisor:
    return Supervisor(
        len(children.lives), children.spawn, policy=POLICY, on_exit=children.ended.append,
        clock=clock, sleep=clock.sleep,
    )  # fmt: skip


def test_restart_delays_double_with_fast_failures_and_a_stable_run_resets_them() -> None:
    restarts = Restarts(POLICY)
    assert [restarts.after_exit(1.0) for _ in range(4)] == [Restart(1.0), Restart(2.0), Restart(4.0), Restart(8.0)]
    assert restarts.after_exit(1.0) == GiveUp(5)
    restarts = Restarts(POLICY)
    assert restarts.after_exit(3600) == Restart(0.5)  # a crash after a long run: the first, short delay
    for _ in range(4):
        restarts.after_exit(1.0)
    assert restarts.after_exit(60) == Restart(0.5)  # a stable run in between: counting starts again
    assert restarts.after_exit(1.0) == Restart(1.0)


def test_capped_delay() -> None:
    restarts = Restarts(RestartPolicy(give_up_after=100, first_delay=1, max_delay=5))
    assert [restarts.after_exit(0).delay for _ in range(5)] == [2, 4, 5, 5, 5]  # type: ignore[union-attr]


async def test_a_child_crashing_at_start_up_is_retried_with_backoff_then_the_supervisor_gives_up() -> None:
    # GIVEN child 0 exits with code 1 one second after each start; child 1 runs fine
    clock = Clock()
    children = Children(clock, {0: [Life(code=1, lived=1.0)], 1: [Life()]})
    supervisor = supervisor_for(children, clock)
    # WHEN the supervisor runs
    code = await asyncio.wait_for(supervisor.run(), 5)
    # THEN it started child 0 five times, waiting longer each time, then gave up with one reason
    assert len(children.started[0]) == 5
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert code == 1
    assert supervisor.failure == (
        "process 0 failed 5 times in a row within 10 s of starting (last: exit code 1); giving up"
    )
    # and stopped the healthy child gracefully: one SIGTERM
    assert [child.signals for child in children.started[1]] == [[signal.SIGTERM]]
    assert sorted(children.ended) == sorted(c.pid for started in children.started.values() for c in started)


async def test_a_killed_child_is_restarted_with_a_new_pid_and_readiness_follows() -> None:
    # GIVEN two children running and ready
    clock = Clock()
    children = Children(clock, {0: [Life(), Life()], 1: [Life()]})
    supervisor = supervisor_for(children, clock)
    run = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.ready)
    first = children.started[0][0]
    clock.now += 60
    # WHEN child 0 is killed
    first.signal(signal.SIGKILL)
    # THEN a new child takes its place after the first short delay, and /readyz follows
    await until(lambda: len(children.started[0]) == 2)
    assert clock.sleeps == [0.5]
    assert children.ended == [first.pid]  # its live gauges are forgotten
    await until(lambda: supervisor.ready)
    described = supervisor.describe()["processes"]
    assert isinstance(described, list)
    assert described[0]["pid"] == children.started[0][1].pid != first.pid
    assert described[0]["restarts"] == 1
    supervisor.stop()
    assert await asyncio.wait_for(run, 5) == 0


async def test_readiness_names_the_child_that_is_not_ready() -> None:
    clock = Clock()
    children = Children(clock, {0: [Life()], 1: [Life()]})
    supervisor = supervisor_for(children, clock)
    run = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.ready)
    children.started[1][0].status = {"ready": False, "poll_failures_in_row": 3}
    assert not supervisor.ready
    assert supervisor.describe()["not_ready"] == [1]
    supervisor.stop()
    await asyncio.wait_for(run, 5)


async def test_stop_sends_one_sigterm_to_each_child_and_returns_the_worst_exit_code() -> None:
    clock = Clock()
    children = Children(clock, {0: [Life(on_term=0)], 1: [Life(on_term=3)], 2: [Life(on_term=-signal.SIGTERM)]})
    supervisor = supervisor_for(children, clock)
    run = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.ready)
    supervisor.stop()
    supervisor.stop()  # a second call does not signal again
    # child 2 died of the SIGTERM itself (before it set its handlers): a clean stop, not 143
    assert await asyncio.wait_for(run, 5) == 3
    assert [c.signals for started in children.started.values() for c in started] == [[signal.SIGTERM]] * 3
    assert not supervisor.ready
    assert {place.state for place in supervisor.places} == {"stopped"}


async def test_a_stop_during_the_backoff_starts_nothing_more() -> None:
    clock = Clock()
    slept = asyncio.Event()

    async def sleep_until_stopped(seconds: float) -> None:
        clock.sleeps.append(seconds)
        slept.set()
        await asyncio.Event().wait()  # the backoff outlasts the test: only the stop ends it

    children = Children(clock, {0: [Life(code=1, lived=1.0)]})
    supervisor = Supervisor(1, children.spawn, policy=POLICY, clock=clock, sleep=sleep_until_stopped)
    run = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(slept.wait(), 5)
    supervisor.stop()
    assert await asyncio.wait_for(run, 5) == 0
    assert len(children.started[0]) == 1


async def test_a_child_that_cannot_be_started_counts_as_a_fast_failure() -> None:
    clock = Clock()

    async def fail(index: int) -> FakeChild:
        raise OSError("fork failed: out of memory")

    supervisor = Supervisor(1, fail, policy=POLICY, clock=clock, sleep=clock.sleep)
    assert await asyncio.wait_for(supervisor.run(), 5) == 1
    assert supervisor.failure is not None
    assert "(last: could not start)" in supervisor.failure


@pytest.mark.parametrize(("code", "described"), [(-9, "killed by SIGKILL"), (2, "exit code 2")])
async def test_the_give_up_line_says_how_the_last_child_ended(code: int, described: str) -> None:
    clock = Clock()
    children = Children(clock, {0: [Life(code=code, lived=0.1)]})
    supervisor = supervisor_for(children, clock)
    await asyncio.wait_for(supervisor.run(), 5)
    assert supervisor.failure is not None
    assert f"(last: {described})" in supervisor.failure


@pytest.mark.parametrize("number", range(1, 65))
def test_every_signal_number_is_named_with_its_number_when_it_has_no_name(number: int) -> None:
    # Linux's real-time signals (34..64, and 32, 33 which the C library keeps) are not all members
    # of signal.Signals: Signals(40) raises ValueError
    described = describe_exit(-number)
    if number in {member.value for member in signal.Signals}:
        assert described == f"killed by {signal.Signals(number).name}"
    else:
        assert described.startswith(f"killed by signal {number}")
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        assert described == f"killed by signal {number} (SIGRTMIN+{number - signal.SIGRTMIN})"


@pytest.mark.parametrize(
    ("code", "described"),
    [
        (None, "could not start"),
        (0, "exit code 0"),
        (1, "exit code 1"),
        (127, "exit code 127"),
        (128, "exit code 128"),
        (137, "exit code 137"),
        (255, "exit code 255"),
        (256, "exit code 256"),
        (-65, "killed by signal 65"),
        (-1000, "killed by signal 1000"),
        (-(2**31), f"killed by signal {2**31}"),
    ],
)
def test_odd_exit_codes_are_described_as_they_are(code: int | None, described: str) -> None:
    assert describe_exit(code) == described


async def test_a_child_killed_by_a_real_time_signal_is_logged_and_restarted() -> None:
    # GIVEN two children running and ready
    clock = Clock()
    children = Children(clock, {0: [Life(), Life()], 1: [Life()]})
    supervisor = supervisor_for(children, clock)
    run = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.ready)
    first = children.started[0][0]
    clock.now += 60
    with structlog.testing.capture_logs() as logs:
        # WHEN child 0 is killed by signal 40 (SIGRTMIN+6 on Linux), which signal.Signals cannot name
        first.signal(40)
        # THEN its end is logged with the number, and a new child takes its place
        await until(lambda: len(children.started[0]) == 2)
        await until(lambda: supervisor.ready)
    [died] = [entry for entry in logs if entry["event"] == "process_died"]
    assert died["pid"] == first.pid
    assert died["exit"] == f"killed by signal 40 (SIGRTMIN+{40 - signal.SIGRTMIN})"
    assert children.started[1][0].signals == []  # the other child runs on, untouched
    assert not run.done()
    supervisor.stop()
    assert await asyncio.wait_for(run, 5) == 0
    assert [child.signals for child in (children.started[0][1], children.started[1][0])] == [[signal.SIGTERM]] * 2


async def test_the_give_up_line_names_a_real_time_signal() -> None:
    clock = Clock()
    children = Children(clock, {0: [Life(code=-40, lived=0.1)], 1: [Life()]})
    supervisor = supervisor_for(children, clock)
    assert await asyncio.wait_for(supervisor.run(), 5) == 1
    assert supervisor.failure is not None
    assert "(last: killed by signal 40 (SIGRTMIN+6)); giving up" in supervisor.failure
    assert [child.signals for child in children.started[1]] == [[signal.SIGTERM]]  # stopped, not left running


async def test_should_the_supervisor_fail_its_children_are_not_left_running() -> None:
    # GIVEN child 0 running, and starting child 1 fails in a way the supervisor does not expect
    clock = Clock()
    children = Children(clock, {0: [Life()], 1: [Life()]})
    started = asyncio.Event()

    async def spawn(index: int) -> FakeChild:
        if index == 1:
            await started.wait()
            raise RuntimeError("a bug")
        child = await children.spawn(index)
        started.set()
        return child

    supervisor = Supervisor(2, spawn, policy=POLICY, clock=clock, sleep=clock.sleep)
    # WHEN the supervisor fails THEN the child it leaves behind had its SIGTERM: it stops gracefully
    with pytest.raises(ExceptionGroup):
        await asyncio.wait_for(supervisor.run(), 5)
    assert [child.signals for child in children.started[0]] == [[signal.SIGTERM]]
