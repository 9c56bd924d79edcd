"""What FIFO tests record: each group's handler calls, to check order and that no two overlapped."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

from conveyor import Message


class Timeline:
    """What each group's handler calls saw: (n, started, finished), in call order. Bodies are
    ``{"g": <group>, "n": <number in the group>}``."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        self.running = 0
        self.peak = 0  # handlers running at once, at most

    async def run(self, message: Message, seconds: float = 0.01) -> None:
        """A handler: note the call, wait ``seconds``."""
        body = message.json()
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.running -= 1
        self.calls[body["g"]].append((body["n"], started, loop.time()))

    def numbers(self, group: str) -> list[int]:
        return [n for n, _, _ in self.calls[group]]

    def assert_in_order_without_overlap(self) -> None:
        for group, calls in self.calls.items():
            assert self.numbers(group) == sorted(self.numbers(group)), f"{group} out of order: {self.numbers(group)}"
            for (_, _, finished), (_, started, _) in itertools.pairwise(calls):
                assert finished <= started, f"{group}: two of its messages overlapped"
