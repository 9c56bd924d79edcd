"""Back-pressure: the poller reserves slots before it receives, workers give them back."""

from __future__ import annotations

import asyncio


class Slots:
    """A counter of messages held; ``reserve`` waits until ``n`` are free and takes them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._changed = asyncio.Condition()

    @property
    def free(self) -> int:
        return self.capacity - self._used

    @property
    def used(self) -> int:
        return self._used

    async def reserve(self, n: int) -> None:
        """Wait until ``n`` slots are free, then take them (``n`` is capped at the capacity)."""
        n = min(n, self.capacity)
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= n)
            self._used += n

    async def resize(self, capacity: int) -> None:
        """Hold at most ``capacity`` from now on (what is held above it stays until given back)."""
        async with self._changed:
            self.capacity = max(1, capacity)
            self._changed.notify_all()

    async def give_back(self, n: int = 1) -> None:
        if n <= 0:
            return
        async with self._changed:
            self._used = max(0, self._used - n)
            self._changed.notify_all()

    async def wait_empty(self) -> None:
        """Wait until every slot has been given back."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._used == 0)
