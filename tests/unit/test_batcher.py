"""The one coalescer behind SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from conveyor.sqs.batcher import MAX_HOLD_SECONDS, Batcher, BatcherClosedError, longest_hold
from tests.polling import until


class Recorder:
    def __init__(self, fail: set[int] | None = None, raise_all: Exception | None = None) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail or set()
        self.raise_all = raise_all

    async def flush(self, entries: Sequence[int]) -> list[int | BaseException]:
        self.calls.append(list(entries))
        await asyncio.sleep(0)
        if self.raise_all:
            raise self.raise_all
        return [ValueError(e) if e in self.fail else e * 10 for e in entries]


async def test_concurrent_entries_share_calls_of_at_most_ten() -> None:
    recorder = Recorder()
    async with Batcher(recorder.flush, linger=0.05) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(25)))
    assert results == [i * 10 for i in range(25)]  # each submitter gets its own entry's result
    assert [len(c) for c in recorder.calls] == [10, 10, 5]


async def test_a_lone_entry_waits_no_longer_than_the_linger() -> None:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    async with Batcher(recorder.flush, linger=0.05) as batcher:
        started = loop.time()
        assert await batcher.submit(1) == 10
        waited = loop.time() - started
    assert 0.04 <= waited < 0.5


async def test_calls_split_by_bytes() -> None:
    recorder = Recorder()
    async with Batcher(recorder.flush, linger=0.01, max_bytes=100, size_of=lambda e: 40) as batcher:
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert [len(c) for c in recorder.calls] == [2, 2, 1]


async def test_entry_failures_reach_only_their_submitter() -> None:
    recorder = Recorder(fail={2})
    async with Batcher(recorder.flush, linger=0.01) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[:2] == [0, 10]
    assert isinstance(results[2], ValueError)
    assert results[3] == 30


async def test_a_failed_call_fails_every_entry_of_it() -> None:
    recorder = Recorder(raise_all=ConnectionError("down"))
    async with Batcher(recorder.flush, linger=0.01) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_leaving_flushes_what_waits_and_then_refuses() -> None:
    recorder = Recorder()
    async with Batcher(recorder.flush, linger=60) as batcher:
        future = batcher.submit_nowait(7)
    assert future.result() == 70  # flushed on exit, not after the 60 s linger
    with pytest.raises(BatcherClosedError):
        batcher.submit_nowait(8)


async def test_a_settling_flush_answers_each_submitter_as_soon_as_its_result_is_known() -> None:
    # GIVEN a flush that knows entry 0's result at once and entry 1's only after a resend
    release = asyncio.Event()

    async def flush(entries: Sequence[int], settle: Callable[[int, int | BaseException], None]) -> None:
        settle(0, entries[0] * 10)
        await release.wait()  # entry 1 is being sent again
        settle(1, entries[1] * 10)

    async with Batcher(settle_each=flush, linger=0.01) as batcher:
        first, second = batcher.submit_nowait(1), batcher.submit_nowait(2)
        # WHEN entry 1 is still being retried THEN entry 0's submitter has its answer already
        assert await asyncio.wait_for(first, timeout=10) == 10
        assert not second.done()
        release.set()
        assert await second == 20


async def test_a_settling_flush_that_fails_fails_only_the_entries_not_yet_answered() -> None:
    async def flush(entries: Sequence[int], settle: Callable[[int, int | BaseException], None]) -> None:
        settle(0, 0)
        raise ConnectionError("down")

    async with Batcher(settle_each=flush, linger=0.01) as batcher:
        results = await asyncio.gather(batcher.submit(0), batcher.submit(1), return_exceptions=True)
    assert results[0] == 0
    assert isinstance(results[1], ConnectionError)


class Gate:
    """A flush that holds each call until released, recording the calls."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()

    async def flush(self, entries: Sequence[int]) -> list[int | BaseException]:
        self.calls.append(list(entries))
        await self.release.wait()
        return [e * 10 for e in entries]


async def test_eager_a_lone_entry_goes_at_once_without_waiting_for_the_linger() -> None:
    recorder = Recorder()
    async with Batcher(recorder.flush, linger=3600, eager=True) as batcher:
        assert await asyncio.wait_for(batcher.submit(1), 5) == 10  # not after an hour
        assert await asyncio.wait_for(batcher.submit(2), 5) == 20
    assert recorder.calls == [[1], [2]]


async def test_eager_entries_of_one_turn_share_a_call() -> None:
    recorder = Recorder()
    async with Batcher(recorder.flush, linger=3600, eager=True) as batcher:
        futures = [batcher.submit_nowait(i) for i in range(3)]
        assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [0, 10, 20]
    assert recorder.calls == [[0, 1, 2]]


async def test_eager_what_arrives_while_a_call_is_in_flight_goes_together_when_it_ends() -> None:
    gate = Gate()
    async with Batcher(gate.flush, linger=3600, eager=True) as batcher:
        first = batcher.submit_nowait(1)
        await until(lambda: len(gate.calls) == 1)
        later = [batcher.submit_nowait(i) for i in (2, 3)]
        await asyncio.sleep(0)
        later.append(batcher.submit_nowait(4))  # another turn, the call still in flight
        assert gate.calls == [[1]]  # gathered, not sent: a call is in flight (and the linger is long)
        gate.release.set()
        assert await asyncio.wait_for(asyncio.gather(first, *later), 5) == [10, 20, 30, 40]
    assert gate.calls == [[1], [2, 3, 4]]


class Timed:
    """A flush whose calls each last ``seconds`` (0: one turn of the loop), or until released."""

    def __init__(self, seconds: float) -> None:
        self.calls: list[list[int]] = []
        self.seconds = seconds
        self.hang = asyncio.Event()  # set: the next calls wait for release
        self.release = asyncio.Event()

    async def flush(self, entries: Sequence[int]) -> list[int | BaseException]:
        self.calls.append(list(entries))
        if self.hang.is_set():
            await self.release.wait()
        else:
            await asyncio.sleep(self.seconds)
        return [e * 10 for e in entries]


async def test_eager_while_calls_fly_the_linger_does_not_cut_a_call_short() -> None:
    """On a slow machine ten requests take longer to arrive than a short linger: entries that arrive
    while a call is in flight wait for it (not for a timer), however long they take to come."""
    timed = Timed(0.2)
    async with Batcher(timed.flush, linger=0.001, eager=True) as batcher:
        assert await batcher.submit(0) == 0  # one call of 0.2 s: the usual call time
        first = batcher.submit_nowait(1)
        await until(lambda: len(timed.calls) == 2)
        later = [batcher.submit_nowait(2)]
        for entry in (3, 4):  # well past the 1 ms linger, the call still in flight
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(later[0]), 0.02)
            later.append(batcher.submit_nowait(entry))
        assert len(timed.calls) == 2  # gathered, not sent
        assert await asyncio.wait_for(asyncio.gather(first, *later), 5) == [10, 20, 30, 40]
    assert timed.calls == [[0], [1], [2, 3, 4]]


async def test_eager_a_full_call_goes_while_others_fly() -> None:
    gate = Gate()
    async with Batcher(gate.flush, linger=3600, eager=True) as batcher:
        first = batcher.submit_nowait(0)
        await until(lambda: len(gate.calls) == 1)
        ten = [batcher.submit_nowait(i) for i in range(1, 11)]
        await until(lambda: len(gate.calls) == 2)  # ten: sent at once, the first still in flight
        assert gate.calls[1] == list(range(1, 11))
        gate.release.set()
        assert await asyncio.wait_for(asyncio.gather(first, *ten), 5) == [i * 10 for i in range(11)]


async def test_eager_a_stalled_call_does_not_hold_the_next_entries_for_long() -> None:
    """A call that hangs (a connection waiting for its read timeout) holds what arrived after it
    only about twice the usual call time, then that goes in a call of its own."""
    timed = Timed(0.01)
    async with Batcher(timed.flush, linger=0.001, eager=True) as batcher:
        for entry in range(3):
            assert await batcher.submit(entry) == entry * 10  # calls of about 10 ms: the usual
        timed.hang.set()
        stalled = batcher.submit_nowait(7)
        await until(lambda: len(timed.calls) == 4)
        timed.hang.clear()
        after = batcher.submit_nowait(8)
        assert await asyncio.wait_for(after, 5) == 80  # sent while the stalled call still hangs
        assert not stalled.done()
        timed.release.set()
        assert await asyncio.wait_for(stalled, 5) == 70


def test_the_longest_hold_is_the_linger_or_the_stall_guards_ceiling() -> None:
    assert longest_hold(0.005, eager=False) == 0.005
    assert longest_hold(0.005, eager=True) == MAX_HOLD_SECONDS
    assert longest_hold(2.0, eager=True) == 2.0


async def test_eager_what_one_turn_brings_past_a_full_call_goes_in_that_turn_too() -> None:
    """A batch request of fifteen to an idle writer: ten go at once, and the other five do not wait
    for that call to end."""
    gate = Gate()
    async with Batcher(gate.flush, linger=3600, eager=True) as batcher:
        futures = [batcher.submit_nowait(i) for i in range(15)]
        await until(lambda: len(gate.calls) == 2)  # both calls made while the first is in flight
        assert gate.calls == [list(range(10)), list(range(10, 15))]
        gate.release.set()
        assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [i * 10 for i in range(15)]


async def test_eager_a_byte_limit_split_of_one_turn_goes_in_that_turn() -> None:
    gate = Gate()
    async with Batcher(gate.flush, linger=3600, eager=True, max_bytes=250, size_of=lambda _: 100) as batcher:
        futures = [batcher.submit_nowait(i) for i in range(3)]  # 300 bytes: two calls
        await until(lambda: len(gate.calls) == 2)
        assert gate.calls == [[0, 1], [2]]
        gate.release.set()
        assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [0, 10, 20]
