"""Adaptive concurrency: how many handlers may run at once, between 1 and ``CONVEYOR_CONCURRENCY``.

AIMD, as Netflix's concurrency-limits ``AIMDLimit`` and TCP do: it starts at the most, and

- shrinks multiplicatively on a drop: a ``Throttle`` (the downstream said it is saturated: halved,
  as TCP does on a loss) or a rise of the handlers' latency (a second whose mean latency is more
  than ``tolerance`` times the lowest of the last half minute's: x0.9, as ``AIMDLimit`` does). One
  drop per round trip: the calls that started before the last decrease saw the old limit and
  say nothing new, so a burst of throttles from one round cuts the limit once;
- grows by one each second in which no drop happened, the calls succeeded at a steady latency and
  the limit was in use (at least half of it running, ``AIMDLimit``'s rule): a limit nobody reaches
  says nothing about the downstream.

Pure arithmetic on a clock; :class:`~conveyor.processor.engine.flow.gate.Flow` feeds it and applies it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

THROTTLE_BACKOFF = 0.5
LATENCY_BACKOFF = 0.9
WINDOW_SECONDS = 1.0
BASELINE_WINDOWS = 30  # the lowest mean latency of the last 30 windows is the no-load latency
MIN_SAMPLES = 5  # a window with fewer successes says nothing about latency
# A rise of less than this is the event loop's and the scheduler's jitter, not the downstream: a 1 ms
# handler taking 3 ms on a busy machine has not found a saturated downstream.
LATENCY_SLACK_SECONDS = 0.01


@dataclass(slots=True)
class Window:
    started: float
    successes: int = 0
    latency_sum: float = 0.0
    peak_running: int = 0
    dropped: bool = False

    @property
    def mean(self) -> float | None:
        return self.latency_sum / self.successes if self.successes >= MIN_SAMPLES else None


@dataclass(slots=True)
class AdaptiveLimit:
    most: int
    now: float
    tolerance: float = 2.0
    limit: float = field(init=False)
    last_decrease: float = field(init=False)
    _window: Window = field(init=False)
    _means: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.limit = float(self.most)
        self.last_decrease = -math.inf
        self._window = Window(self.now)
        self._means = deque(maxlen=BASELINE_WINDOWS)

    @property
    def current(self) -> int:
        """Handlers that may run at once now."""
        return max(1, min(self.most, math.floor(self.limit)))

    def throttled(self, started: float, now: float) -> bool:
        """A call that started at ``started`` was throttled; True if the limit went down."""
        self._roll(now)
        return self._drop(started, now, THROTTLE_BACKOFF)

    def succeeded(self, started: float, now: float, running: int) -> bool:
        """A call that started at ``started`` succeeded with ``running`` calls under way (itself
        included); True if the limit changed (a window closed)."""
        changed = self._roll(now)
        window = self._window
        window.successes += 1
        window.latency_sum += now - started
        window.peak_running = max(window.peak_running, running)
        return changed

    def tick(self, now: float) -> bool:
        """Close the windows that have ended (a quiet second closes too); True if the limit changed."""
        return self._roll(now)

    def _drop(self, started: float, now: float, backoff: float) -> bool:
        if started < self.last_decrease:
            return False  # this call began under the old limit: its round has been answered
        before = self.current
        self.limit = max(1.0, self.limit * backoff)
        self.last_decrease = now
        self._window.dropped = True
        return self.current != before  # (at 1 already: nothing changed, nothing to resize or log)

    def _roll(self, now: float) -> bool:
        changed = False
        while now - self._window.started >= WINDOW_SECONDS:
            changed |= self._close(self._window, now)
            self._window = Window(self._window.started + WINDOW_SECONDS)
            if now - self._window.started >= WINDOW_SECONDS:
                self._window = Window(now - (now - self._window.started) % WINDOW_SECONDS)  # skip quiet seconds
        return changed

    def _close(self, window: Window, now: float) -> bool:
        mean = window.mean
        baseline = min(self._means) if self._means else None
        if mean is not None:
            self._means.append(mean)
        if window.dropped:
            return False
        if (
            mean is not None
            and baseline is not None
            and mean > max(self.tolerance * baseline, baseline + LATENCY_SLACK_SECONDS)
        ):
            before = self.limit
            self._drop(window.started, now, LATENCY_BACKOFF)
            return before != self.limit
        if window.successes and window.peak_running * 2 >= self.current and self.limit < self.most:
            self.limit = min(float(self.most), math.floor(self.limit) + 1.0)
            return True
        return False
