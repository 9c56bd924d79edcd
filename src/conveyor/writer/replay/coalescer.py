"""Natural batching for the writer's idempotency store calls.

A request's keys go to the store at once when no call is under way; keys that arrive meanwhile wait
for that call to end and then go together in one call. There is no timer: alone, a request waits for
nothing; under load, calls grow with the load, and the store's cost per request falls (one redis-py
call costs about as much client CPU for one key as for ten). SQS calls use the linger-based
:class:`~conveyor.sqs.batcher.Batcher` instead: there the call itself is the cost to cut, and SQS
takes at most ten entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

type ManyCall[I, R] = Callable[[list[I]], Awaitable[Sequence[R]]]
type Waiting[I, R] = tuple[list[I], asyncio.Future[list[R]]]  # one submitter's items and its answer


class Coalescer[I, R]:
    """One call under way at a time; what arrives meanwhile is gathered for the next, up to
    ``max_items`` (a submitter's items are never split across calls). An async context manager:
    leaving it waits for the calls under way."""

    def __init__(self, call: ManyCall[I, R], *, max_items: int) -> None:
        self._call = call
        self._max_items = max_items
        self._waiting: list[Waiting[I, R]] = []
        self._running = False
        self._group: asyncio.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._group is not None:
            await self._group.__aexit__(et, e, tb)

    async def submit(self, items: Sequence[I]) -> list[R]:
        """The results of ``items``, in order (or the call's exception)."""
        return await self._enqueue(items)

    def post(self, items: Sequence[I], on_error: Callable[[BaseException], None]) -> None:
        """Gather ``items`` for the next call without waiting for it (safe from within a call: the
        next call follows it); a failure goes to ``on_error``."""

        def done(future: asyncio.Future[list[R]]) -> None:
            if not future.cancelled() and (exc := future.exception()) is not None:
                on_error(exc)

        self._enqueue(items).add_done_callback(done)

    def _enqueue(self, items: Sequence[I]) -> asyncio.Future[list[R]]:
        if self._group is None:
            raise RuntimeError("the coalescer is not running")
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(items), future))
        if not self._running:
            self._running = True
            self._group.create_task(self._run())
        return future

    def _take(self) -> list[Waiting[I, R]]:
        taken: list[Waiting[I, R]] = []
        count = 0
        while self._waiting and (not taken or count + len(self._waiting[0][0]) <= self._max_items):
            entry = self._waiting.pop(0)
            taken.append(entry)
            count += len(entry[0])
        return taken

    async def _run(self) -> None:
        try:
            while self._waiting:
                await self._call_once(self._take())
        finally:
            self._running = False
            for _, future in self._waiting:  # only if this task was cancelled: never leave a submitter hanging
                future.cancel()
            self._waiting.clear()

    async def _call_once(self, taken: list[Waiting[I, R]]) -> None:
        try:
            results = list(await self._call([item for items, _ in taken for item in items]))
            for items, future in taken:
                mine, results = results[: len(items)], results[len(items) :]
                if not future.done():
                    future.set_result(mine)
        except Exception as exc:  # noqa: BLE001 - the call failed: each submitter gets the error
            for _, future in taken:
                if not future.done():
                    future.set_exception(exc)
        finally:
            for _, future in taken:
                future.cancel()  # no-op for answered futures; never leave a submitter hanging
