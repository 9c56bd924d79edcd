"""Readiness from polling: ready once a poll succeeded, until polls start failing or the stop begins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Health:
    def __init__(self, stopping: asyncio.Event, clock: Callable[[], float] = time.monotonic) -> None:
        self._stopping = stopping  # the engine's one stop signal
        self._clock = clock
        self.last_success: float | None = None
        self.failures_in_row = 0

    def poll_succeeded(self) -> None:
        self.last_success = self._clock()
        self.failures_in_row = 0

    def poll_failed(self) -> int:
        self.failures_in_row += 1
        return self.failures_in_row

    @property
    def ready(self) -> bool:
        return self.last_success is not None and self.failures_in_row == 0 and not self._stopping.is_set()

    def describe(self) -> dict[str, object]:
        since = None if self.last_success is None else round(self._clock() - self.last_success, 3)
        return {
            "ready": self.ready,
            "seconds_since_last_poll": since,
            "poll_failures_in_row": self.failures_in_row,
            "stopping": self._stopping.is_set(),
        }
