"""What this process remembers of keys beyond what the store says, each memory bounded.

- :class:`Unrecorded`: handler completions the store failed to record, in order, each with what to
  call should the store then find the key another owner's; recorded again each heartbeat tick, and
  meanwhile a copy received here is a duplicate whatever the store says.
- :class:`CompletedHere`: keys completed here within a lease. A claim answered CLAIMED to us for one
  of them was made before the completion landed (answers of pooled connections can cross): a
  duplicate, not a new claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import structlog

log = structlog.get_logger("conveyor.processor")
MAX_KEPT_KEYS = 100_000  # bound of each memory (unrecorded, recently completed)


class Unrecorded(dict[str, Callable[[], None]]):
    """Key -> what to call if the store says, once it answers, that the key was another owner's."""

    def remember(self, key: str, duplicate: Callable[[], None]) -> None:
        self[key] = duplicate
        if len(self) > MAX_KEPT_KEYS:  # the store has been down for long: forget the oldest
            oldest = next(iter(self))
            del self[oldest]
            log.error("idempotency_completion_forgotten", key=oldest)


class CompletedHere:
    """Keys completed here, each remembered for ``seconds`` (by ``clock``)."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: dict[str, float] = {}  # in order of expiry

    def __contains__(self, key: object) -> bool:
        return self._until.get(str(key), -math.inf) > self._clock()

    def remember(self, key: str) -> None:
        now = self._clock()
        while self._until:  # in order of expiry: drop the expired from the front
            oldest, until = next(iter(self._until.items()))
            if until > now and len(self._until) < MAX_KEPT_KEYS:
                break
            del self._until[oldest]
        self._until.pop(key, None)
        self._until[key] = now + self._seconds
