"""The writer's natural batching of store calls: alone, a request goes at once; what arrives while a
call is under way goes together in the next one."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.writer.replay.coalescer import Coalescer


class Store:
    """Records each call's items; a call ends when the test says so."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def call(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [item * 10 for item in items]


async def test_what_arrives_during_a_call_goes_together_in_the_next() -> None:
    store = Store()
    async with Coalescer(store.call, max_items=100) as coalescer:
        first = asyncio.create_task(coalescer.submit([1]))
        await asyncio.sleep(0)  # the first call is under way, alone
        others = [asyncio.create_task(coalescer.submit([n, n + 1])) for n in (2, 4, 6)]
        await asyncio.sleep(0)
        assert store.calls == [[1]]
        store.gate.set()
        assert await first == [10]
        assert [await o for o in others] == [[20, 30], [40, 50], [60, 70]]
    assert store.calls == [[1], [2, 3, 4, 5, 6, 7]]


async def test_a_call_takes_at_most_max_items_and_never_splits_a_submitter() -> None:
    store = Store()
    async with Coalescer(store.call, max_items=4) as coalescer:
        first = asyncio.create_task(coalescer.submit([0]))
        await asyncio.sleep(0)
        waiting = [
            asyncio.create_task(coalescer.submit(items)) for items in ([1, 2, 3], [4, 5], [6], [7, 8, 9, 10, 11])
        ]
        await asyncio.sleep(0)
        store.gate.set()
        results = [await first, *[await w for w in waiting]]
    assert store.calls == [[0], [1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 11]]  # one over max: it is alone
    assert results == [[0], [10, 20, 30], [40, 50], [60], [70, 80, 90, 100, 110]]


async def test_a_failed_call_fails_each_of_its_submitters_and_the_next_call_goes_on() -> None:
    store = Store()
    async with Coalescer(store.call, max_items=100) as coalescer:
        store.fail = ConnectionError("down")
        first = asyncio.create_task(coalescer.submit([1]))
        await asyncio.sleep(0)
        second = asyncio.create_task(coalescer.submit([2]))
        store.gate.set()
        with pytest.raises(ConnectionError):
            await first
        store.fail = None
        with pytest.raises(ConnectionError):
            await second  # it shared nothing with the first call, but the store was still down
        assert await coalescer.submit([3]) == [30]


async def test_what_a_call_posts_goes_in_the_next_call_and_its_failure_is_reported() -> None:
    """``post`` from within a call (the writer undoing a round whose answer was lost): no waiting,
    no deadlock; the items go in the next call, and a failure reaches ``on_error``."""
    errors: list[BaseException] = []
    calls: list[list[int]] = []

    async def call(items: list[int]) -> list[int]:
        calls.append(items)
        if items == [1]:
            coalescer.post([-1], on_error=errors.append)
            raise ConnectionError("answer lost")
        if -1 in items:
            raise ConnectionError("still down")
        return items

    async with Coalescer(call, max_items=100) as coalescer:
        with pytest.raises(ConnectionError):
            await coalescer.submit([1])
        assert await coalescer.submit([2]) == [2]
    assert calls == [[1], [-1], [2]]
    assert [str(e) for e in errors] == ["still down"]
