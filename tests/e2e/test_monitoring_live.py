"""The dashboard's and the alert rules' metric names against live services: a real queue-writer's
/metrics and a real queue-processor's ops /metrics (canary replies on), not just the registries the
unit test builds in-process (tests/unit/test_monitoring_assets.py). The continuous canary's own
metrics stay with the unit test: it serves them only while it probes."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from tests.e2e.services import Proc, start_processor, stopped_at_the_end, writer
from tests.localstack_fixtures import Queues
from tests.unit.test_monitoring_assets import EXTERNAL, NAME, dashboard_expressions, exposition_names, rule_groups

SECRET = "monitoring-e2e-canary-secret"  # noqa: S105 - a test-only canary secret
CANARY_PREFIX = "conveyor_canary_"  # the canary's process, not started here


def scraped(proc: Proc) -> set[str]:
    with urllib.request.urlopen(proc.url + "/metrics", timeout=5) as response:  # noqa: S310 - local
        return exposition_names(response.read().decode())


@pytest.mark.e2e
def test_every_charted_and_alerted_metric_is_served_by_the_running_services(queues: Queues, tmp_path: Path) -> None:
    processor = start_processor(queues, tmp_path, tmp_path / "record.sqlite", CONVEYOR_CANARY_SECRET=SECRET)
    with stopped_at_the_end(processor), writer(queues, tmp_path) as api:
        served = scraped(api) | scraped(processor)
    exprs = dashboard_expressions() + [str(rule["expr"]) for group in rule_groups() for rule in group["rules"]]
    used = {name for expr in exprs for name in NAME.findall(expr)} - EXTERNAL
    missing = {name for name in used if not name.startswith(CANARY_PREFIX)} - served
    assert missing == set()
