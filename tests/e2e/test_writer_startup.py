"""`queue-writer` start-up as a process: SQS unreachable means serving unready (503 with
Retry-After) and no traceback; a queue that does not exist is one line on stderr and exit 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from conveyor.localstack import LocalStack, free_port
from tests.e2e.services import STARTED, Proc
from tests.localstack_fixtures import BIN, REPO, make_queues, wait_for


def start_writer(tmp: Path, endpoint: str, **extra: str) -> Proc:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env |= {
        "CONVEYOR_SQS_ENDPOINT_URL": endpoint,
        "CONVEYOR_QUEUE_NAME": "no-such-queue",
        "CONVEYOR_WRITER_PORT": str(port),
        "CONVEYOR_LOG_FORMAT": "json",
        "PYTHONPATH": str(REPO),
        **extra,
    }
    log = tmp / f"writer-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(BIN / "queue-writer")], env=env, stdout=out, stderr=out)
    proc = Proc(process, port, log)
    STARTED.append(proc)
    return proc


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_sqs_unreachable_at_start_serves_unready_and_503(tmp_path: Path) -> None:
    # GIVEN an SQS endpoint where nothing listens
    proc = start_writer(
        tmp_path,
        f"http://127.0.0.1:{free_port()}",
        CONVEYOR_SQS_MAX_ATTEMPTS="1",
        CONVEYOR_SQS_CONNECT_TIMEOUT_SECONDS="0.5",
    )
    # WHEN the writer starts THEN it serves: alive, not ready, and messages are 503 with Retry-After
    wait_for(lambda: answers(proc.url + "/healthz") or proc.process.poll() is not None, 30, "writer serving")
    assert proc.process.poll() is None, proc.log.read_text()
    readyz = httpx.get(proc.url + "/readyz", timeout=5)
    posted = httpx.post(proc.url + "/messages", json={"body": 1}, timeout=10)
    assert proc.stop() == 0
    assert readyz.status_code == 503
    assert (posted.status_code, posted.headers["retry-after"]) == (503, "2"), posted.text
    assert posted.headers["content-type"] == "application/problem+json"
    assert posted.json()["code"] == "EndpointConnectionError"
    # AND its output is log lines, no traceback
    output = proc.log.read_text()
    assert "Traceback" not in output, output
    events = [json.loads(line)["event"] for line in output.splitlines()]
    assert set(events) <= {"queue_unreachable", "writer_stopping"}, output
    assert "queue_unreachable" in events


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_queue_that_does_not_exist_is_one_line_and_exit_1(
    localstack: LocalStack, tmp_path: Path, workers: str
) -> None:
    proc = start_writer(tmp_path, localstack.endpoint, CONVEYOR_WRITER_WORKERS=workers)
    try:
        code = proc.process.wait(timeout=60)
    finally:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGKILL)
    output = proc.log.read_text()
    assert code == 1, output
    lines = output.splitlines()
    assert 1 <= len(lines) <= int(workers), output  # one line per worker that got to say it
    assert all(
        line.startswith("queue-writer: AWS.SimpleQueueService.NonExistentQueue")
        or line.startswith("queue-writer: QueueDoesNotExist")
        for line in lines
    ), output


def test_a_mirror_queue_of_the_other_kind_is_one_line_and_exit_1(localstack: LocalStack, tmp_path: Path) -> None:
    live, mirror = make_queues(localstack.endpoint), make_queues(localstack.endpoint, fifo=True)
    proc = start_writer(
        tmp_path, localstack.endpoint, CONVEYOR_QUEUE_NAME=live.name, CONVEYOR_MIRROR_QUEUE_URL=mirror.url
    )
    try:
        code = proc.process.wait(timeout=60)
    finally:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGKILL)
    output = proc.log.read_text()
    assert code == 1, output
    assert output.splitlines() == [
        "queue-writer: CONVEYOR_MIRROR_QUEUE_URL is a FIFO queue and the live queue a standard one: they must be alike"
    ]
