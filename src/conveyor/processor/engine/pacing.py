"""Receives spaced out on a sparse queue, so that each brings up to ten (``CONVEYOR_BATCH_WINDOW_MS``).

A long poll answers as soon as one message is there: at a steady 200 messages/s two pollers
receive one or two messages a call, a ReceiveMessage (and a DeleteMessageBatch) for almost every
message. With a window, a receive that brought fewer than it asked for says the queue is sparse:
the next receive, by any poller, starts a window after it, and the receives after that a window
apart, one at a time. What arrived meanwhile is waiting for it, up to ten in one call. A message
waits at most about the window (plus the call) for a receive, whichever poller makes it.

A receive that came back full says the queue holds more: the pacing ends and the pollers receive
at once again, so a backlog and a saturated queue cost what they cost without a window (0.1
receives per message). An empty long poll waited on SQS for its messages already: the next one
may go at once. An empty short poll (``CONVEYOR_WAIT_TIME_SECONDS=0``) is sparse.

One object shared by the engine's pollers; it only computes delays (the poller sleeps them,
ending early on a stop).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ReceivePacing:
    def __init__(self, window: float, *, long_polls: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._long_polls = long_polls
        self._clock = clock
        self._sparse = False  # the last receive answered brought fewer than it asked for
        self._next = 0.0  # while sparse: the earliest start of the next receive (clock time)

    def turn(self) -> float:
        """Seconds to wait before this poller's receive (0: at once); a wait claims its turn, so
        that the next poller waits a window longer."""
        if not self._sparse:
            return 0.0
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._window
        return start - now

    def received(self, started: float, got: int, asked: int) -> None:
        """A receive that started at ``started`` (clock time) brought ``got`` of ``asked``."""
        if not self._window:
            return
        if got >= asked or (got == 0 and self._long_polls):
            self._sparse = False
            self._next = 0.0
        else:
            self._sparse = True
            self._next = max(self._next, started + self._window)
