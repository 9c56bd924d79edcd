"""Backoff schedules: handler retries (by receive count) and poll errors (by failures in a row)."""

from __future__ import annotations

import random
from collections.abc import Callable

from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS

MAX_EXPONENT = 64  # 2**64 x any base is past every cap; a larger power overflows a float (at 1,024)


def retry_delay(receive_count: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> int:
    """Seconds before a failed message is delivered again: exponential in the receive count, with
    "equal jitter" (half fixed, half random) so that a burst of failures does not return at once."""
    ceiling = min(cap, base * 2.0 ** min(max(receive_count - 1, 0), MAX_EXPONENT))
    delay = ceiling / 2 + rand() * ceiling / 2
    return max(0, min(round(delay), MAX_VISIBILITY_SECONDS))


def poll_backoff(failures_in_row: int, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after a failed poll: full jitter, doubling from 0.1 s up to ``cap``."""
    return rand() * min(cap, 0.1 * 2.0 ** min(failures_in_row, 30))
