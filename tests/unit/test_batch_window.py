"""CONVEYOR_BATCH_WINDOW_MS: a message waits at most the window to share an SQS request. The
writer holds a lone message for company; the processor spaces a sparse queue's receives (one
shared pacing for all pollers) and lingers its deletes and visibility changes that long."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from conveyor.message import Message
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine import Engine
from conveyor.processor.engine.pacing import ReceivePacing
from conveyor.settings import ProcessorSettings, WriterSettings
from conveyor.sqs.queues import QueueConfig
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.unit.conftest import QUEUE, running_writer
from tests.unit.engine_support import QUEUE as WORK
from tests.unit.engine_support import config_for, started, until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- the pacing of receives, on its own ---


def test_without_a_window_no_receive_waits() -> None:
    pacing = ReceivePacing(0.0, long_polls=True, clock=Clock())
    pacing.received(100.0, 1, 10)
    assert pacing.turn() == 0


def test_a_full_receive_is_followed_at_once() -> None:
    pacing = ReceivePacing(0.1, long_polls=True, clock=Clock())
    pacing.received(100.0, 10, 10)
    assert pacing.turn() == 0
    assert pacing.turn() == 0


def test_a_receive_that_brought_fewer_than_it_asked_for_delays_the_next_by_the_window() -> None:
    clock = Clock()
    pacing = ReceivePacing(0.1, long_polls=True, clock=clock)
    pacing.received(100.0, 3, 10)  # started at 100.0
    clock.now = 100.02  # answered 20 ms later
    assert pacing.turn() == pytest.approx(0.08)  # a window after the receive's start


def test_pollers_take_turns_a_window_apart_while_the_queue_is_sparse() -> None:
    clock = Clock()
    pacing = ReceivePacing(0.1, long_polls=True, clock=clock)
    pacing.received(100.0, 1, 10)
    first, second = pacing.turn(), pacing.turn()  # two pollers at the same moment
    assert [first, second] == pytest.approx([0.1, 0.2])


def test_a_poller_late_for_its_turn_goes_at_once_and_the_next_a_window_later() -> None:
    clock = Clock()
    pacing = ReceivePacing(0.1, long_polls=True, clock=clock)
    pacing.received(100.0, 2, 10)
    clock.now = 100.5
    assert pacing.turn() == 0
    assert pacing.turn() == pytest.approx(0.1)


def test_a_full_receive_ends_the_pacing_even_for_turns_claimed_before_it() -> None:
    clock = Clock()
    pacing = ReceivePacing(0.1, long_polls=True, clock=clock)
    pacing.received(100.0, 2, 10)
    pacing.turn()
    pacing.turn()
    pacing.received(100.1, 10, 10)  # the queue holds more: the backlog is taken at full speed
    assert pacing.turn() == 0


def test_asked_for_fewer_than_ten_and_got_them_all_is_full() -> None:
    # the slots (or the rate limit) asked for four: the queue may well hold more
    pacing = ReceivePacing(0.1, long_polls=True, clock=Clock())
    pacing.received(100.0, 4, 4)
    assert pacing.turn() == 0


def test_an_empty_long_poll_is_followed_at_once_an_empty_short_poll_is_not() -> None:
    clock = Clock()
    long_polls = ReceivePacing(0.1, long_polls=True, clock=clock)
    long_polls.received(100.0, 2, 10)
    long_polls.received(100.0, 0, 10)  # it waited on SQS for messages already
    assert long_polls.turn() == 0
    short_polls = ReceivePacing(0.1, long_polls=False, clock=clock)
    short_polls.received(100.0, 0, 10)
    assert short_polls.turn() == pytest.approx(0.1)


# --- the processor ---


def test_the_window_replaces_the_delete_linger_and_spaces_the_receives() -> None:
    queue = QueueConfig("url", "arn", 262_144, 30, False, False, None, None)
    windowed = EngineConfig.build(ProcessorSettings(batch_window_ms=100, delete_linger_ms=20), queue, None)
    assert (windowed.delete_linger, windowed.batch_window) == (0.1, 0.1)
    default = EngineConfig.build(ProcessorSettings(delete_linger_ms=20), queue, None)
    assert (default.delete_linger, default.batch_window) == (0.02, 0.0)


class HeldSleep:
    """The engine's sleep: each pause is recorded and lasts until the test releases it."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.release = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await self.release.wait()
        self.release.clear()


async def test_a_sparse_receive_waits_the_window_and_the_next_brings_what_arrived_meanwhile() -> None:
    fake = InMemorySqs()
    fake.create(WORK)
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(message.body)

    sleep = HeldSleep()
    engine = Engine(as_client(fake), config_for(fake, batch_window=0.5), handler, sleep=sleep)
    fake.put(WORK, "first")
    async with started(engine):
        # WHEN a receive brings one message of the ten it asked for
        await until(lambda: handled == ["first"] and bool(sleep.pauses), what="the first handled, a pause asked for")
        # THEN the next receive waits for the window (measured from the first receive's start)
        assert 0 < sleep.pauses[0] <= 0.5
        assert fake.count("ReceiveMessage") == 1
        # and what arrived meanwhile comes in one receive
        for n in range(6):
            fake.put(WORK, f"later-{n}")
        sleep.release.set()
        await until(lambda: len(handled) == 7, what="the later six handled")
        assert fake.count("ReceiveMessage") == 2
        assert sorted(handled[1:]) == [f"later-{n}" for n in range(6)]


async def test_a_backlog_is_received_without_pauses_until_a_receive_comes_back_short() -> None:
    fake = InMemorySqs()
    fake.create(WORK)
    for n in range(25):
        fake.put(WORK, str(n))
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(message.body)

    sleep = HeldSleep()
    config = config_for(fake, batch_window=0.5, concurrency=30)
    engine = Engine(as_client(fake), config, handler, sleep=sleep)
    async with started(engine):
        await until(lambda: len(handled) == 25 and bool(sleep.pauses), what="all handled, then a pause")
        # ten, ten and five: only the short one is followed by a pause
        assert fake.count("ReceiveMessage") == 3
        assert len(sleep.pauses) == 1


async def test_a_stop_during_the_pause_ends_it_with_no_further_receive() -> None:
    fake = InMemorySqs()
    fake.create(WORK)
    fake.put(WORK, "one")

    async def handler(message: Message) -> None:
        pass

    sleep = HeldSleep()  # never released: only the stop can end the pause
    engine = Engine(as_client(fake), config_for(fake, batch_window=1.0), handler, sleep=sleep)
    async with started(engine) as task:
        await until(lambda: bool(sleep.pauses), what="a pause")
        engine.stop()
        await until(task.done, what="the engine stopped")
    assert fake.count("ReceiveMessage") == 1
    assert fake.count("DeleteMessageBatch") == 1  # the one handled was deleted on the way out


# --- the writer ---


def test_the_writer_lingers_for_the_window_or_without_one_sends_eagerly() -> None:
    windowed = WriterSettings(batch_window_ms=100, batch_linger_ms=5)
    assert (windowed.send_linger_seconds, windowed.send_eagerly) == (0.1, False)
    default = WriterSettings(batch_linger_ms=5)
    assert (default.send_linger_seconds, default.send_eagerly) == (0.005, True)


async def test_with_a_window_a_lone_post_waits_for_company_and_shares_its_call(fake: InMemorySqs) -> None:
    settings = WriterSettings(queue_name=QUEUE, batch_window_ms=1000)
    async with running_writer(fake, settings) as api:
        began = time.monotonic()
        first = asyncio.create_task(api.post("/messages", json={"body": "first"}))
        # WHEN a second message comes while the first waits (no call has been made for it)
        await _one_waiting(api)
        assert fake.count("SendMessageBatch") == 0
        second = await api.post("/messages", json={"body": "second"})
        answered = await first
    # THEN both went in one SendMessageBatch, and the first was answered no sooner than the window
    assert (answered.status_code, second.status_code) == (202, 202)
    assert fake.count("SendMessageBatch") == 1
    assert len(fake.calls[-1][1]["Entries"]) == 2
    assert time.monotonic() - began >= 1.0


async def test_with_a_window_ten_messages_go_at_once(fake: InMemorySqs) -> None:
    # a full call is not held: the ten are answered while an eleventh still waits for its window
    settings = WriterSettings(queue_name=QUEUE, batch_window_ms=1000)
    async with running_writer(fake, settings) as api:
        ten = [asyncio.create_task(api.post("/messages", json={"body": n})) for n in range(10)]
        answers = await asyncio.gather(*ten)
        assert [a.status_code for a in answers] == [202] * 10
        assert fake.count("SendMessageBatch") == 1
        eleventh = asyncio.create_task(api.post("/messages", json={"body": 10}))
        await _one_waiting(api)
        assert fake.count("SendMessageBatch") == 1
        assert (await eleventh).status_code == 202
    assert fake.count("SendMessageBatch") == 2


async def _one_waiting(api: httpx.AsyncClient) -> None:
    """Until the writer is answering one POST /messages (its own gauge says so)."""
    waiting = 'conveyor_writer_requests_in_progress{route="/messages"} 1.0'
    deadline = time.monotonic() + 5
    while waiting not in (await api.get("/metrics")).text:
        assert time.monotonic() < deadline, "no POST /messages under way within 5 s"
        await asyncio.sleep(0.01)
