"""The operator's docs say what the code does (the defaults a reader relies on)."""

from __future__ import annotations

from pathlib import Path

from conveyor.canary.command import DEFAULT_METRICS_PORT
from conveyor.canary.wire import MAX_AGE_MS, MAX_AHEAD_MS
from conveyor.sqs.queues import CANARY_RETENTION_SECONDS

DOCS = Path(__file__).parents[2]


def test_the_canary_defaults_are_the_documented_ones() -> None:
    operating = (DOCS / "docs" / "operating.md").read_text()
    canary = (DOCS / "docs" / "canary.md").read_text()
    assert f"(default `127.0.0.1:{DEFAULT_METRICS_PORT}`; 0 serves none)" in operating
    assert f"`--metrics-port` ({DEFAULT_METRICS_PORT}; 0 serves none)" in canary
    assert (MAX_AGE_MS, MAX_AHEAD_MS) == (10 * 60_000, 60_000)
    assert "at most 10 minutes in the past and at most 1 minute in the future" in canary
    assert CANARY_RETENTION_SECONDS == 600
    assert "Retention 600 s" in canary
