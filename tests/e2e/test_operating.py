"""The operator's path end to end: a real writer and processor (sharing the canary secret), a handler
that fails messages with different exception types, then exactly the commands an operator runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from conveyor.localstack import LocalStack
from tests.e2e.services import Record, start_processor, writer
from tests.localstack_fixtures import BIN, Queues, count, make_queues, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SECRET = "e2e-operating-secret-0123"  # noqa: S105 - the test's own secret
FAILURES = {"ValueError": 3, "KeyError": 2, "BadAmountError": 2}


def conveyor(queues: Queues, *args: str) -> subprocess.CompletedProcess[str]:
    env = queues.env(CONVEYOR_CANARY_SECRET=SECRET)
    return subprocess.run([str(BIN / "conveyor"), *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def test_canary_status_peek_and_selective_redrive(localstack: LocalStack, sqs: SQSClient, tmp_path: Path) -> None:
    # GIVEN maxReceiveCount 1 (a retryable error is dead-lettered by the processor on its first failure)
    queues = make_queues(localstack.endpoint, max_receive_count=1)
    record = Record(tmp_path / "record.sqlite")
    processor = start_processor(
        queues, tmp_path, record.path, handler="tests.handlers:fail_by_type", CONVEYOR_CANARY_SECRET=SECRET
    )
    with writer(queues, tmp_path) as api:
        for kind, n in FAILURES.items():
            for i in range(n):
                assert httpx.post(api.url + "/messages", json={"body": {"fail": kind, "i": i}}).status_code == 202
        for i in range(2):
            assert httpx.post(api.url + "/messages", json={"body": {"key": f"ok-{i}"}}).status_code == 202
        wait_for(lambda: count(sqs, queues.dlq_url) == (7, 0) and len(record.rows()) == 2, 60, "all handled")
        probe = conveyor(queues, "canary", "--once", "--url", api.url)
    assert processor.stop() == 0
    assert probe.returncode == 0, probe.stderr
    assert len(record.rows()) == 2  # the canary never reached the handler

    status = json.loads(conveyor(queues, "status", "--json").stdout)
    figures = {row["role"]: (row["visible"], row["in_flight"]) for row in status["queues"]}
    assert figures == {"queue": (0, 0), "dlq": (7, 0), "canary": (0, 0)}

    # peek: the processor's records, every type; the DLQ keeps its 7 messages
    peek = conveyor(queues, "dlq", "peek", "--json", "--limit", "10")
    assert peek.returncode == 0, peek.stderr
    records = [json.loads(line)["dead_letter"] for line in peek.stdout.splitlines()]
    types = sorted(r["error_type"] for r in records)
    assert types == sorted(
        ["builtins.ValueError"] * 3 + ["builtins.KeyError"] * 2 + ["tests.handlers.BadAmountError"] * 2
    )
    assert {r["source_queue"] for r in records} == {queues.url}
    assert {r["retries_exhausted"] for r in records if r["error_type"] == "tests.handlers.BadAmountError"} == {False}
    assert {r["retries_exhausted"] for r in records if r["error_type"] == "builtins.ValueError"} == {True}
    assert count(sqs, queues.dlq_url) == (7, 0)

    # a dry run moves nothing; then ValueError and BadAmountError (two flags, two spellings) go back
    dry = conveyor(
        queues, "dlq", "redrive", "--error-type", "ValueError", "--error-type", "BadAmountError", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert (count(sqs, queues.url), count(sqs, queues.dlq_url)) == ((0, 0), (7, 0))
    moved = conveyor(queues, "dlq", "redrive", "--error-type", "builtins.ValueError", "--error-type", "BadAmountError")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines()[-1].startswith("conveyor dlq redrive: moved 5, skipped 2, failed 0")
    assert (count(sqs, queues.url), count(sqs, queues.dlq_url)) == ((5, 0), (2, 0))
    left = [
        json.loads(line)["dead_letter"]["error_type"]
        for line in conveyor(queues, "dlq", "peek", "--json").stdout.splitlines()
    ]
    assert left == ["builtins.KeyError", "builtins.KeyError"]
