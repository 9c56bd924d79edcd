"""Flow control seen from outside: the real queue-processor on LocalStack (and redis-server), asserting
on the queue, the handler's deliveries, /readyz and /metrics."""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.error
import urllib.request
from contextlib import ExitStack, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.localstack import free_port
from tests.e2e.services import Proc, Record, processor_env, start, start_processor, stopped_at_the_end
from tests.e2e.test_processes import preload
from tests.localstack_fixtures import count, make_queues, wait_for
from tests.redis_fixtures import redis_server, redis_url

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from conveyor.localstack import LocalStack

__all__ = ["redis_server", "redis_url"]  # the fixtures, imported for pytest


def readyz(proc: Proc) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(proc.url + "/readyz", timeout=5) as response:  # noqa: S310 - local
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def readyz_or_none(proc: Proc) -> tuple[int, dict[str, Any]] | None:
    """/readyz's answer, None while nothing listens yet."""
    try:
        return readyz(proc)
    except OSError:
        return None


def metric(proc: Proc, name: str) -> float:
    with urllib.request.urlopen(proc.url + "/metrics", timeout=5) as response:  # noqa: S310 - local
        found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", response.read().decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def handled_at(record: Path) -> list[float]:
    with closing(sqlite3.connect(record, timeout=30)) as db:
        return sorted(at for (at,) in db.execute("SELECT at FROM deliveries"))


def test_a_downstream_outage_opens_the_breaker_and_dead_letters_nothing(
    localstack: LocalStack, sqs: SQSClient, tmp_path: Path
) -> None:
    queues = make_queues(localstack.endpoint, max_receive_count=3)
    keys = preload(sqs, queues.url, 60)
    down = tmp_path / "down"
    down.touch()
    record = Record(tmp_path / "record.sqlite")
    port = free_port()
    env = processor_env(
        queues, record.path, "tests.handlers:down_while_marked", CONVEYOR_TEST_DOWN_FILE=str(down),
        CONVEYOR_BREAKER_PAUSE_SECONDS="1", CONVEYOR_BREAKER_RETRY_SECONDS="4", CONVEYOR_CONCURRENCY="10",
        CONVEYOR_WAIT_TIME_SECONDS="1", CONVEYOR_PROCESSOR_PORT=str(port),
    )  # fmt: skip
    processor = start("queue-processor", env, port, tmp_path / "processor.log", wait_ready=False)
    with stopped_at_the_end(processor):
        # (not "ready": on a slow machine the breaker may open before the first look at /readyz)
        wait_for(lambda: readyz_or_none(processor) is not None, 30, "queue-processor answering /readyz")
        wait_for(lambda: readyz(processor)[1].get("breaker") != "closed", 20, "the breaker open")
        status, body = readyz(processor)
        assert status == 503  # not ready (live: /healthz still answers)
        assert body["breaker"] in ("open", "half_open")
        assert metric(processor, "conveyor_processor_breaker_state") in (1, 2)
        # the probes keep failing for a few rounds, then the downstream heals
        wait_for(lambda: metric(processor, 'conveyor_processor_breaker_transitions_total{to="half_open"}') >= 3,
                 20, "three probe rounds")  # fmt: skip
        received_while_down = metric(processor, "conveyor_processor_received_total")
        down.unlink()
        record.wait_for_keys(keys, 60)
        wait_for(lambda: readyz(processor)[0] == 200, 10, "ready again")
        assert readyz(processor)[1]["breaker"] == "closed"
    assert count(sqs, queues.dlq_url) == (0, 0)
    assert count(sqs, queues.url) == (0, 0)
    assert received_while_down < 60 * 2  # far from the 180 receives that would have emptied it into the DLQ


def test_two_processors_sharing_the_redis_limit_start_no_faster_than_it_together(
    localstack: LocalStack, sqs: SQSClient, tmp_path: Path, redis_url: str
) -> None:
    queues = make_queues(localstack.endpoint)
    keys = preload(sqs, queues.url, 80)  # 8 s at the shared 10/s; two unshared limits would take 4
    record = Record(tmp_path / "record.sqlite")
    rate = 10.0
    shared = {
        "CONVEYOR_RATE_LIMIT_PER_SECOND": str(rate), "CONVEYOR_RATE_LIMIT_STORE": redis_url,
        "CONVEYOR_TEST_SLEEP": "0", "CONVEYOR_WAIT_TIME_SECONDS": "1",
    }  # fmt: skip
    with ExitStack() as both:
        processors = [both.enter_context(stopped_at_the_end(start_processor(queues, tmp_path, record.path, **shared)))
                      for _ in range(2)]  # fmt: skip
        record.wait_for_keys(keys, 60)
        assert all(metric(proc, "conveyor_processor_rate_limit_per_second") == rate for proc in processors)
    assert set(record.pids()) == {proc.process.pid for proc in processors}  # both took their share
    starts = handled_at(record.path)
    # the shared bucket starts empty and holds one second's worth: by any moment, both together have
    # started at most rate x (time since the first start) + 2 x burst (the first start had its own token)
    first = starts[0]
    for n, at in enumerate(starts, start=1):
        assert n <= rate * (at - first) + 2 * rate, f"{n} starts within {at - first:.2f} s"
