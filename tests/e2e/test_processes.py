"""Several processes behind one ops port: `queue-processor` with CONVEYOR_PROCESSES=2 and
`queue-writer` with CONVEYOR_WRITER_WORKERS=2, as real processes against LocalStack."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from conveyor.localstack import free_port
from tests.e2e.figures import report
from tests.e2e.services import Proc, Record, duplicates, elapsed, start_processor, writer
from tests.localstack_fixtures import BIN, Queues, count, drain, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

TWO = {"CONVEYOR_PROCESSES": "2", "CONVEYOR_CONCURRENCY": "10"}


def preload(sqs: SQSClient, url: str, n: int) -> set[str]:
    """Put ``n`` messages ``{"key": ...}`` on the queue; their keys."""
    keys = [uuid.uuid4().hex[:12] for _ in range(n)]
    for start in range(0, n, 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps({"key": k})} for i, k in enumerate(keys[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")  # type: ignore[arg-type]
    return set(keys)


def get_json(proc: Proc, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(proc.url + path, timeout=5) as response:  # noqa: S310 - local
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def samples(proc: Proc) -> dict[str, float]:
    """The /metrics samples, by name and labels (``name{label="value"}``)."""
    with urllib.request.urlopen(proc.url + "/metrics", timeout=5) as response:  # noqa: S310 - local
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


def child_pids(proc: Proc) -> list[int]:
    _, body = get_json(proc, "/readyz")
    return [entry["pid"] for entry in body["processes"]]


def test_two_processes_handle_every_message_once_and_serve_one_sum(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    # GIVEN a processor with two engine processes, both ready
    record = Record(tmp_path / "record.sqlite")
    processor = start_processor(queues, tmp_path, record.path, CONVEYOR_TEST_SLEEP="0.2", **TWO)
    status, ready = get_json(processor, "/readyz")
    assert (status, ready["ready"], len(ready["processes"])) == (200, True, 2)
    pids = set(child_pids(processor))
    assert len(pids) == 2
    assert processor.process.pid not in pids
    # WHEN 300 messages arrive
    keys = preload(sqs, queues.url, 300)
    try:
        record.wait_for_keys(keys, 90)
        wait_for(lambda: count(sqs, queues.url) == (0, 0), 30, "queue empty")
        wait_for(lambda: samples(processor)["conveyor_processor_succeeded_total"] == 300, 10, "all counted")
        metrics = samples(processor)
    finally:
        code = processor.stop()
    # THEN each was handled once, by both processes, and /metrics is the sum over them
    seen = record.keys()
    assert set(seen) == keys
    assert duplicates(seen) == 0
    by_pid = record.pids()
    assert set(by_pid) == pids
    assert metrics["conveyor_processor_succeeded_total"] == sum(by_pid.values()) == 300
    assert metrics["conveyor_processor_received_total"] == 300
    assert metrics["conveyor_processor_handler_seconds_count"] == 300
    assert metrics['conveyor_sqs_requests_total{operation="DeleteMessageBatch",outcome="ok"}'] >= 30
    assert metrics["conveyor_processor_in_flight"] == 0
    assert metrics["conveyor_processor_running"] == 0
    assert code == 0
    report("processes_2", messages=300, per_process=sorted(by_pid.values()), duplicates=0)


def test_a_child_killed_with_sigkill_is_restarted_and_nothing_is_lost(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    # GIVEN two processes working through 400 messages, with a short visibility timeout
    record = Record(tmp_path / "record.sqlite")
    settings = {"CONVEYOR_VISIBILITY_TIMEOUT_SECONDS": "5", "CONVEYOR_WAIT_TIME_SECONDS": "1", **TWO}
    processor = start_processor(queues, tmp_path, record.path, **settings)
    keys = preload(sqs, queues.url, 400)
    try:
        wait_for(lambda: len(record.rows()) >= 100, 60, "a quarter processed")
        # WHEN one child is killed with SIGKILL mid-run
        victim, other = child_pids(processor)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        # THEN the supervisor starts another in its place and is ready again
        wait_for(lambda: processor.ready() and child_pids(processor)[0] not in (victim, None), 30, "child restarted")
        assert child_pids(processor)[1] == other
        # and every message is processed: the dead child's come back after their visibility timeout
        record.wait_for_keys(keys, 90)
        recovered = elapsed(killed_at)
        wait_for(lambda: count(sqs, queues.url) == (0, 0), 30, "queue empty")
        status, ready = get_json(processor, "/readyz")
        metrics = samples(processor)
    finally:
        code = processor.stop()
    seen = record.keys()
    rows = len(record.rows())
    # at most what the killed child held: concurrency + prefetch not handled, plus handled not deleted
    held_at_most = 10 + 10 + 10
    assert set(seen) == keys
    assert duplicates(seen) <= held_at_most
    assert (status, ready["processes"][0]["restarts"]) == (200, 1)
    # the dead child's counts stay in the sum (it may have recorded a delivery it had not counted yet),
    # its messages in flight do not
    succeeded = metrics["conveyor_processor_succeeded_total"]
    assert rows - 10 <= succeeded <= rows
    assert metrics["conveyor_processor_in_flight"] == 0
    assert code == 0
    report("processes_kill_9_child", messages=400, duplicates=duplicates(seen), bound=held_at_most,
           seconds_to_all_processed_after_kill=recovered)  # fmt: skip


def test_sigterm_drains_every_child(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    # GIVEN two processes with 1 s handlers, each holding messages it has not started
    record = Record(tmp_path / "record.sqlite")
    grace = 10
    processor = start_processor(
        queues, tmp_path, record.path, CONVEYOR_TEST_SLEEP="1", CONVEYOR_SHUTDOWN_GRACE_SECONDS=str(grace), **TWO
    )
    keys = preload(sqs, queues.url, 200)
    wait_for(lambda: len(set(record.pids())) == 2, 60, "both processes handling messages")
    # WHEN the supervisor gets SIGTERM
    processor.signal(signal.SIGTERM)
    stopping = time.monotonic()
    code = processor.process.wait(grace + 10)
    stop_seconds = elapsed(stopping)
    # THEN it exits 0 once every child has drained: what was started finished, the rest is visible
    # again at once (not after the visibility timeout), nothing is left in flight
    assert code == 0
    handled = record.keys()
    assert duplicates(handled) == 0
    assert count(sqs, queues.url) == (len(keys) - len(handled), 0)
    rest = [json.loads(message["Body"])["key"] for message in drain(sqs, queues.url, len(keys) - len(handled))]
    assert sorted(rest + list(handled)) == sorted(keys)
    report("processes_sigterm", messages=200, handled_before_stop=len(handled), stop_seconds=stop_seconds)


def test_a_missing_queue_is_one_line_from_the_supervisor(queues: Queues, tmp_path: Path) -> None:
    env = queues.env(
        CONVEYOR_QUEUE_NAME=f"missing-{uuid.uuid4().hex[:8]}", CONVEYOR_PROCESSOR_PORT=str(free_port()), **TWO
    )
    result = subprocess.run([str(BIN / "queue-processor")], env=env, capture_output=True, timeout=60, check=False)
    assert result.returncode == 1
    [line] = result.stderr.decode().strip().splitlines()  # not one traceback per child
    assert line.startswith("queue-processor: AWS.SimpleQueueService.NonExistentQueue"), line


def _worker_counts(writer_pid: int) -> dict[int, float]:
    """Accepted messages per worker, read from each worker's own file in the writer's multiprocess
    directory (named in the workers' environment)."""
    children = Path(f"/proc/{writer_pid}/task/{writer_pid}/children").read_text().split()
    environs = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in children]
    shared = {
        v.split(b"=", 1)[1].decode() for env in environs for v in env if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")
    }
    assert len(shared) == 1, shared
    directory = Path(shared.pop())
    counts: dict[int, float] = {}
    for file in directory.glob("counter_*.db"):
        pid = int(file.stem.removeprefix("counter_"))
        alone = directory.parent / f"{directory.name}-{pid}"
        alone.mkdir()
        try:
            shutil.copy(file, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]  # untyped library
            value = registry.get_sample_value("conveyor_writer_messages_total", {"result": "accepted"})
            counts[pid] = value or 0.0
        finally:
            shutil.rmtree(alone)
    return counts


async def _post_each_on_its_own_connection(base: str, n: int, clients: int) -> list[int]:
    """New connection per request, so that the two workers (one listening socket) share them."""
    statuses: list[int] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def post(count: int) -> None:
            for _ in range(count):
                response = await client.post("/messages", json={"body": {"key": uuid.uuid4().hex}})
                statuses.append(response.status_code)

        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(post(n // clients))
    return statuses


def test_writer_workers_serve_one_metrics_for_all(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    with writer(queues, tmp_path, CONVEYOR_WRITER_WORKERS="2") as api:
        statuses = asyncio.run(_post_each_on_its_own_connection(api.url, 240, 8))
        metrics = samples(api)
        accepted = statuses.count(202)
        assert accepted == 240
        # every 202 counted once in the one /metrics, whichever worker answered it
        assert metrics['conveyor_writer_messages_total{result="accepted"}'] == accepted
        assert metrics['conveyor_writer_requests_total{route="/messages",status="202"}'] == accepted
        assert metrics['conveyor_writer_requests_in_progress{route="/messages"}'] == 0
        # and both workers took their share
        per_worker = _worker_counts(api.process.pid)
    assert len(per_worker) == 2
    assert all(value > 0 for value in per_worker.values()), per_worker
    assert sum(per_worker.values()) == accepted
    assert len(drain(sqs, queues.url, accepted)) == accepted
    report("writer_workers_2", accepted=accepted, per_worker=sorted(per_worker.values()))
