"""Readiness from polling: ready once a poll succeeded, until polls start failing or the stop begins.

A received batch whose idempotency claims the store cannot answer keeps readiness off too, counted on
its own (``claim_failures_in_row``): the queue answers, the store does not, and an operator must be
able to tell which. So does an open breaker (``breaker``): the handlers' downstream is failing, the
process is alive and waits for it."""

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
        self.claim_failures_in_row = 0
        self.breaker_state = "closed"

    def breaker(self, state: str) -> None:
        """The breaker is ``closed``, ``open`` or ``half_open``: not ready unless closed (still live)."""
        self.breaker_state = state

    def poll_succeeded(self) -> None:
        self.last_success = self._clock()
        self.failures_in_row = 0
        self.claim_failures_in_row = 0

    def poll_failed(self) -> int:
        self.failures_in_row += 1
        return self.failures_in_row

    def claim_succeeded(self) -> None:
        """The store answered a batch's claims: ready again, as after a poll that worked."""
        self.poll_succeeded()

    def claim_failed(self) -> int:
        """A batch's claims got no answer; returns the failures in a row (for the backoff)."""
        self.claim_failures_in_row += 1
        return self.claim_failures_in_row

    @property
    def ready(self) -> bool:
        failing = self.failures_in_row or self.claim_failures_in_row or self.breaker_state != "closed"
        return self.last_success is not None and not failing and not self._stopping.is_set()

    def describe(self) -> dict[str, object]:
        since = None if self.last_success is None else round(self._clock() - self.last_success, 3)
        return {
            "ready": self.ready,
            "seconds_since_last_poll": since,
            "poll_failures_in_row": self.failures_in_row,
            "claim_failures_in_row": self.claim_failures_in_row,
            "breaker": self.breaker_state,
            "stopping": self._stopping.is_set(),
        }
