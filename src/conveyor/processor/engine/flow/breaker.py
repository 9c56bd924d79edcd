"""The breaker: when most recent handler calls fail, stop taking messages instead of burning their
receives (and, with the redrive policy, moving a healthy backlog into the dead-letter queue while a
downstream is down).

Closed: calls are counted in a sliding window of ``window`` seconds (one bucket per second). With at
least ``min_calls`` calls and a failure ratio of ``failure_ratio`` or more, it opens. Open: nothing is
received for ``pause`` seconds. Half-open: ``probes`` messages are let through; the first probe that
fails opens it again, and once the probes succeed (or the queue had fewer to give and those succeeded)
it closes, with a fresh window. A probe round that has no verdict after another pause (a probe may
never give one: a canary, a duplicate) lets new probes through; the verdicts of the earlier rounds'
probes still count when they come (a handler slower than the pause would otherwise never close it).
Nothing starts while it is open (the workers release what they take), so every call that began
after it opened is a probe.

What counts as a failure is the classifier's business (:func:`~conveyor.processor.engine.flow.gate.verdict`):
a throttle is not one, and neither is a message the handler rejects (it speaks of the message, not of
the downstream). Pure state on a clock; :class:`~conveyor.processor.engine.flow.gate.Flow` applies it.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field

from conveyor.processor.config import BreakerPolicy


class State(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(slots=True)
class Breaker:
    policy: BreakerPolicy
    state: State = State.CLOSED
    opened_at: float = -math.inf
    half_opened_at: float = -math.inf
    _buckets: deque[tuple[int, int, int]] = field(default_factory=deque)  # (second, calls, failures)
    _probes_out: int = 0  # let through while half-open, results not yet in
    _probes_passed: int = 0

    def allow(self, want: int, now: float) -> int:
        """How many messages a receive may ask for now (0: none until :meth:`wait`)."""
        self._half_open_if_due(now)
        if self.state is State.CLOSED:
            return want
        if self.state is State.OPEN:
            return 0
        granted = max(0, min(want, self.policy.probes - self._probes_out - self._probes_passed))
        self._probes_out += granted
        return granted

    def wait(self, now: float) -> float:
        """Seconds until :meth:`allow` may grant something (sooner if a probe's result comes)."""
        self._half_open_if_due(now)
        if self.state is State.OPEN:
            return max(0.0, self.opened_at + self.policy.pause - now)
        if self.state is State.HALF_OPEN:
            return max(0.0, self.half_opened_at + self.policy.pause - now)
        return 0.0

    def unused(self, n: int, now: float, *, answered: bool = True) -> State | None:
        """A probe receive brought ``n`` fewer messages than granted. With no probe left out, the
        queue has no more to test with: closes if those that came succeeded (and if none came:
        nothing to protect). A receive SQS did not answer (an error, a stop) only gives its grants
        back: it says nothing of the queue. Returns the new state if it changed."""
        if self.state is not State.HALF_OPEN or n <= 0:
            return None
        self._probes_out = max(0, self._probes_out - n)
        if self._probes_out == 0 and answered:
            return self._close()
        return None

    def record(self, failed: bool, started: float, now: float) -> State | None:
        """The verdict of one handler call that began at ``started``; returns the new state if it
        changed. Calls that began before the breaker opened (or before the probes) say nothing new."""
        if self.state is State.OPEN or (self.state is State.HALF_OPEN and started < self.opened_at):
            return None
        if self.state is State.HALF_OPEN:
            self._probes_out = max(0, self._probes_out - 1)
            if failed:
                return self._open(now)
            self._probes_passed += 1
            if self._probes_passed >= self.policy.probes or self._probes_out == 0:
                return self._close()
            return None
        second = int(now)
        while self._buckets and self._buckets[0][0] <= second - self.policy.window:
            self._buckets.popleft()
        if self._buckets and self._buckets[-1][0] == second:
            _, calls, failures = self._buckets[-1]
            self._buckets[-1] = (second, calls + 1, failures + failed)
        else:
            self._buckets.append((second, 1, int(failed)))
        calls = sum(bucket[1] for bucket in self._buckets)
        failures = sum(bucket[2] for bucket in self._buckets)
        if calls >= self.policy.min_calls and failures >= self.policy.failure_ratio * calls:
            return self._open(now)
        return None

    def _half_open_if_due(self, now: float) -> None:
        # A probe round with no verdict after a pause starts again: a probe may never give one (a
        # canary, a duplicate its claim skipped, a message released behind its FIFO group).
        stale = self.state is State.HALF_OPEN and now >= self.half_opened_at + self.policy.pause
        if self.state is State.OPEN and now >= self.opened_at + self.policy.pause:
            self._probes_passed = 0
        elif not stale:
            return
        self.state = State.HALF_OPEN
        self.half_opened_at = now
        self._probes_out = 0  # (those still out count when they answer; new ones may go meanwhile)

    def _open(self, now: float) -> State:
        self.state = State.OPEN
        self.opened_at = now
        self._buckets.clear()
        return self.state

    def _close(self) -> State:
        self.state = State.CLOSED
        self._buckets.clear()
        self._probes_out = 0
        self._probes_passed = 0
        return self.state
