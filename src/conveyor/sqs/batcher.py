"""One coalescer for SQS batch calls: SendMessageBatch, DeleteMessageBatch and
ChangeMessageVisibilityBatch alike.

Entries submitted concurrently are gathered into one call of up to ``max_entries`` and ``max_bytes``;
a call is made when it is full, or ``linger`` seconds after its first entry arrived, so an entry with
no company never waits longer than the linger.

With ``eager`` (the writer's: Nagle's algorithm, clocked by the calls themselves), an entry that
finds no call in flight is sent at once (with whatever else arrives in the same turn of the event
loop). What arrives while calls are in flight waits until its call is full or until the calls in
flight have ended: their answers release the clients whose next requests fill the next call, so the
batch size follows the number of concurrent senders, not the machine's speed. A fixed timer here
would not: the time ten requests take to arrive grows with the CPU time each costs, and on a CPU
three times slower a 5 ms linger cut calls at seven or eight entries. A stall guard still bounds the
wait if a call in flight hangs: twice the recent typical call time (at least the linger, at most
``MAX_HOLD_SECONDS``).

Each submitter gets its own entry's result: with a settling flush (``settle_each``) the moment that
result is known, even while other entries of the same call are still being retried. Flush calls run
inside the batcher's task group: leaving ``async with`` flushes what is waiting and waits for every
call in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from conveyor.sqs.limits import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES

type Answer[R] = R | BaseException
"""What one entry's submitter gets: its result, or its exception."""
type FlushFn[E, R] = Callable[[Sequence[E]], Awaitable[Sequence[Answer[R]]]]
type Settle[R] = Callable[[int, Answer[R]], None]
"""Hands the entry at an index of the call its answer."""
type SettlingFlushFn[E, R] = Callable[[Sequence[E], Settle[R]], Awaitable[None]]
"""A flush that settles each entry as soon as its answer is known."""


@dataclass(slots=True)
class _Pending[E, R]:
    entries: list[E] = field(default_factory=list)
    futures: list[asyncio.Future[R]] = field(default_factory=list)
    size: int = 0
    timer: asyncio.Handle | None = None


STALL_FACTOR = 2.0  # eager: a call in flight this many times longer than usual is taken as stalled
MAX_HOLD_SECONDS = 1.0  # eager: the longest an entry waits for calls in flight (unless the linger is longer)
CALL_TIME_WEIGHT = 0.2  # weight of the latest call in the running estimate of a call's duration


def longest_hold(linger: float, *, eager: bool) -> float:
    """The longest an entry waits before its call is made."""
    return max(linger, MAX_HOLD_SECONDS) if eager else linger


class BatcherClosedError(RuntimeError):
    """An entry was submitted after the batcher stopped accepting."""


class Batcher[E, R]:
    """Coalesce entries into batch calls made by ``flush`` (results in entry order)."""

    def __init__(
        self,
        flush: FlushFn[E, R] | None = None,
        *,
        settle_each: SettlingFlushFn[E, R] | None = None,
        linger: float,
        max_entries: int = MAX_BATCH_ENTRIES,
        max_bytes: int = MAX_BATCH_BYTES,
        size_of: Callable[[E], int] = lambda _: 0,
        on_flush: Callable[[int, float], None] | None = None,
        eager: bool = False,
    ) -> None:
        if flush is not None and settle_each is None:
            self._flush_each = _settle_all(flush)
        elif settle_each is not None and flush is None:
            self._flush_each = settle_each
        else:
            raise TypeError("give either flush (all answers at the end) or settle_each (one by one)")
        self._linger = linger
        self._max_entries = max_entries
        self.max_bytes = max_bytes  # may be lowered once the queue's own limit is known
        self._size_of = size_of
        self._on_flush = on_flush
        self._eager = eager
        self._in_flight = 0  # calls under way
        self._call_seconds = 0.0  # running estimate of a call's duration (eager's stall guard)
        self._started_this_turn = 0  # calls started in this turn of the event loop (eager)
        self._pending: _Pending[E, R] = _Pending()
        self._group: asyncio.TaskGroup | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        self.flush_now()
        if self._group is not None:
            await self._group.__aexit__(et, e, tb)

    def submit_nowait(self, entry: E) -> asyncio.Future[R]:
        """Queue ``entry``; the returned future resolves to its own result (or its exception)."""
        if self._closed or self._group is None:
            raise BatcherClosedError("batcher is closed")
        size = self._size_of(entry)
        pending = self._pending
        if pending.entries and pending.size + size > self.max_bytes:
            self.flush_now()
            pending = self._pending
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        pending.entries.append(entry)
        pending.futures.append(future)
        pending.size += size
        if len(pending.entries) >= self._max_entries:
            self.flush_now()
        elif pending.timer is None:
            loop = asyncio.get_running_loop()
            if not self._eager:
                pending.timer = loop.call_later(self._linger, self.flush_now)
            elif self._in_flight <= self._started_this_turn:
                # No call was in flight when this turn began: what did not fit the call(s) just
                # started goes in this turn too (a batch request of fifteen, a byte-limit split).
                pending.timer = loop.call_soon(self.flush_now)  # after this turn's other submitters
            else:  # the end of the calls in flight sends it (see _call); this only guards against a stall
                pending.timer = loop.call_later(self._stall_guard(), self.flush_now)
        return future

    async def submit(self, entry: E) -> R:
        """Queue ``entry`` and wait for its result."""
        return await self.submit_nowait(entry)

    def _stall_guard(self) -> float:
        guard = max(self._linger, STALL_FACTOR * self._call_seconds)
        return min(guard, longest_hold(self._linger, eager=True))

    def flush_now(self) -> None:
        """Send what is waiting now, without waiting for the linger."""
        pending, self._pending = self._pending, _Pending()
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.entries and self._group is not None:
            self._in_flight += 1
            if self._eager:
                if not self._started_this_turn:
                    asyncio.get_running_loop().call_soon(self._next_turn)
                self._started_this_turn += 1
            self._group.create_task(self._call(pending))

    def _next_turn(self) -> None:
        self._started_this_turn = 0

    async def _call(self, pending: _Pending[E, R]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()

        def settle(index: int, answer: Answer[R]) -> None:
            _resolve(pending.futures[index], answer)

        try:
            try:
                await self._flush_each(pending.entries, settle)
            except Exception as exc:  # noqa: BLE001 - the whole call failed: each entry not yet answered gets it
                for future in pending.futures:
                    _resolve(future, exc)
            took = loop.time() - started
            self._call_seconds = (
                took
                if not self._call_seconds
                else ((1 - CALL_TIME_WEIGHT) * self._call_seconds + CALL_TIME_WEIGHT * took)
            )
            if self._on_flush is not None:
                self._on_flush(len(pending.entries), took)
        finally:
            for future in pending.futures:
                future.cancel()  # no-op for resolved futures; never leave a submitter hanging
            self._in_flight -= 1
            if self._eager and not self._in_flight and self._pending.entries:
                self.flush_now()  # what gathered while the calls were in flight


def _settle_all[E, R](flush: FlushFn[E, R]) -> SettlingFlushFn[E, R]:
    """A flush that returns every answer at the end, as a settling flush."""

    async def flush_each(entries: Sequence[E], settle: Settle[R]) -> None:
        answers = await flush(entries)
        for index, answer in zip(range(len(entries)), answers, strict=True):
            settle(index, answer)

    return flush_each


def _resolve[R](future: asyncio.Future[R], answer: Answer[R]) -> None:
    if future.done():
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)
