"""The one coalescer behind SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from conveyor.sqs.batcher import Batcher, BatcherClosedError


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
