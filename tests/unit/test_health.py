"""Readiness: a poll that failed and a batch whose claims the store could not answer both turn it
off, each counted under its own name."""

from __future__ import annotations

import asyncio

from conveyor.processor.engine.health import Health


def test_claim_failures_are_counted_apart_from_poll_failures() -> None:
    health = Health(asyncio.Event(), clock=lambda: 0.0)
    health.poll_succeeded()
    assert health.ready
    # WHEN the store cannot answer a batch's claims twice
    assert [health.claim_failed(), health.claim_failed()] == [1, 2]
    # THEN readiness is off, and the failures are the store's, not the polls'
    assert not health.ready
    described = health.describe()
    assert (described["poll_failures_in_row"], described["claim_failures_in_row"]) == (0, 2)
    # AND a claim that works makes it ready again
    health.claim_succeeded()
    assert health.ready
    assert health.describe()["claim_failures_in_row"] == 0


def test_a_poll_that_works_clears_both_counts() -> None:
    health = Health(asyncio.Event(), clock=lambda: 0.0)
    health.poll_failed()
    health.claim_failed()
    health.poll_succeeded()
    assert health.ready
