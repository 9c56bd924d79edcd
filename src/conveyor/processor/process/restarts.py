"""When to restart an engine process that ended, and when to give up (pure logic, no processes).

A child that lived less than ``stable_seconds`` failed fast (at start-up, most likely): each fast
failure in a row doubles the wait before the next start, and after ``give_up_after`` of them the
supervisor gives up rather than spin. A child that had been running for a while is restarted after
the first, short delay: its crash says nothing about the next one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    stable_seconds: float = 10.0
    give_up_after: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0


@dataclass(frozen=True, slots=True)
class Restart:
    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    failures: int


class Restarts:
    """One process slot's record of fast failures in a row."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.fast_in_row = 0

    def after_exit(self, lived_seconds: float) -> Restart | GiveUp:
        policy = self.policy
        if lived_seconds >= policy.stable_seconds:
            self.fast_in_row = 0
        else:
            self.fast_in_row += 1
            if self.fast_in_row >= policy.give_up_after:
                return GiveUp(self.fast_in_row)
        return Restart(min(policy.max_delay, policy.first_delay * 2**self.fast_in_row))
