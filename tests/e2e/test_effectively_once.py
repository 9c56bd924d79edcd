"""Effectively once with real processes: a processor killed with SIGKILL mid-handler, with
the idempotency store on: every key is completed, none twice."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor import metadata
from tests.e2e.figures import report
from tests.e2e.services import Proc, Record, start_processor, stopped_at_the_end
from tests.localstack_fixtures import Queues, count, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def metric(proc: Proc, name: str) -> float:
    """A sample from the processor's /metrics (0 when absent)."""
    with urllib.request.urlopen(proc.url + "/metrics", timeout=5) as response:  # noqa: S310 - local
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_kill_9_mid_handler_with_the_store_on_completes_every_key_once(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    # GIVEN 4 keys, each put on the queue twice by a plain producer, and a processor with a store
    for copy in range(2):
        for key in range(4):
            attribute = {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": f"k{key}"}}
            body = json.dumps({"key": f"k{key}", "copy": copy})
            sqs.send_message(QueueUrl=queues.url, MessageBody=body, MessageAttributes=attribute)  # type: ignore[arg-type]
    record = Record(tmp_path / "record.sqlite")
    settings = {
        "CONVEYOR_IDEMPOTENCY_STORE": f"sqlite:///{tmp_path}/store.sqlite3",
        "CONVEYOR_CONCURRENCY": "1",
        "CONVEYOR_TEST_SLEEP": "2",
        "CONVEYOR_VISIBILITY_TIMEOUT_SECONDS": "5",
        "CONVEYOR_WAIT_TIME_SECONDS": "1",
    }
    first = start_processor(queues, tmp_path, record.path, **settings)
    # WHEN it is killed while a handler runs (one completion recorded and deleted, the next started)
    wait_for(lambda: metric(first, 'conveyor_sqs_requests_total{operation="DeleteMessageBatch",outcome="ok"}') >= 1
             and metric(first, "conveyor_processor_running") == 1, 30, "a second handler running")  # fmt: skip
    first.process.kill()
    first.process.wait()
    # THEN another processor finishes the work: the killed one's message comes back, its claim runs out
    with stopped_at_the_end(start_processor(queues, tmp_path, record.path, **settings)):
        wait_for(lambda: len(record.keys()) == 4 and count(sqs, queues.url) == (0, 0), 90, "every key completed")
    completions = Counter(json.loads(body)["key"] for _, body, _, _ in record.rows())
    assert completions == Counter({f"k{key}": 1 for key in range(4)})
    report("kill_9_with_idempotency_store", keys=4, copies_per_key=2, completions=sum(completions.values()))
