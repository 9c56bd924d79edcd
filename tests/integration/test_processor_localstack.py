"""The processor against a real LocalStack, each test asserting what happens on the queue."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor import BatchFailures, InvalidJsonError, Message, Reject, Retry, batch_handler, metadata
from conveyor.localstack import LocalStack, free_port
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine import Engine
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.user_code import BatchHandler, adapt
from conveyor.settings import SqsSettings
from conveyor.sqs.client import sqs_client
from tests.localstack_fixtures import BIN, Queues, count, drain, make_queues, wait_for
from tests.polling import until

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@asynccontextmanager
async def engine_on(
    queues: Queues,
    handler: Callable[[Message], Awaitable[None]] | BatchHandler,
    max_receive_count: int = 5,
    dedupe: Dedupe | None = None,
    **overrides: object,
) -> AsyncIterator[Engine]:
    settings = SqsSettings(sqs_endpoint_url=queues.endpoint, queue_name=queues.name)
    async with sqs_client(settings) as client:
        config = EngineConfig(
            queue_url=queues.url, dlq_url=queues.dlq_url, concurrency=5, prefetch=10, pollers=1,
            wait_time_seconds=1, visibility_timeout=5, max_receive_count=max_receive_count,
            retry_base_seconds=0, retry_max_seconds=0, delete_linger=0.01, shutdown_grace=5,
            poll_error_backoff_max=0.2, fifo=queues.name.endswith(".fifo"),
        )  # fmt: skip
        config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
        engine = Engine(client, config, handler, dedupe=dedupe)
        task = asyncio.create_task(engine.run())
        try:
            yield engine
        finally:
            engine.stop()
            await asyncio.wait_for(task, 30)


def send(sqs: SQSClient, url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)])


def dead_letter_record(message: dict[str, object]) -> dict[str, object]:
    attributes = message["MessageAttributes"]
    assert isinstance(attributes, dict)
    return json.loads(attributes[metadata.DEAD_LETTER]["StringValue"])  # type: ignore[no-any-return]


async def test_failures_are_retried_then_dead_lettered_after_max_receive_count(
    localstack: LocalStack, sqs: SQSClient
) -> None:
    queues = make_queues(localstack.endpoint, max_receive_count=3)
    send(sqs, queues.url, ['{"n": 1}'])
    receive_counts: list[int] = []

    async def handler(message: Message) -> None:
        receive_counts.append(message.receive_count)
        raise RuntimeError("boom")

    async with engine_on(queues, handler, max_receive_count=3):
        await until(lambda: len(receive_counts) >= 3 and count(sqs, queues.url) == (0, 0), 20, "3 tries, queue empty")
    [dead] = drain(sqs, queues.dlq_url, 1)
    assert receive_counts == [1, 2, 3]
    assert dead["Body"] == '{"n": 1}'
    record = dead_letter_record(dead)
    assert record["error_message"] == "boom"
    assert record["receive_count"] == 3
    assert record["retries_exhausted"] is True


async def test_reject_goes_to_the_dlq_at_once_with_metadata(queues: Queues, sqs: SQSClient) -> None:
    sqs.send_message(
        QueueUrl=queues.url, MessageBody='{"order": 9}',
        MessageAttributes={"tenant": {"DataType": "String", "StringValue": "acme"}},
    )  # fmt: skip
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise Reject("customer unknown")

    async with engine_on(queues, handler):
        [dead] = await asyncio.to_thread(drain, sqs, queues.dlq_url, 1)
    assert calls == 1
    assert dead["MessageAttributes"]["tenant"]["StringValue"] == "acme"
    record = dead_letter_record(dead)
    assert record["error_type"] == "conveyor.message.Reject"
    assert record["error_message"] == "customer unknown"
    assert record["receive_count"] == 1
    assert count(sqs, queues.url) == (0, 0)


async def test_body_that_is_not_json_is_dead_lettered(queues: Queues, sqs: SQSClient) -> None:
    send(sqs, queues.url, ["not json at all", '{"fine": true}'])
    handled: list[object] = []

    async def handler(message: Message) -> None:
        handled.append(message.json())

    async with engine_on(queues, handler):
        [dead] = await asyncio.to_thread(drain, sqs, queues.dlq_url, 1)
        await until(lambda: count(sqs, queues.url) == (0, 0), 10, "queue empty")
    assert dead["Body"] == "not json at all"
    assert dead_letter_record(dead)["error_type"] == "conveyor.message.InvalidJsonError"
    assert handled == [{"fine": True}]


async def test_a_handler_slower_than_the_visibility_timeout_is_not_delivered_twice(
    queues: Queues, sqs: SQSClient
) -> None:
    send(sqs, queues.url, ['"slow"'])
    deliveries = 0

    async def handler(message: Message) -> None:
        nonlocal deliveries
        deliveries += 1
        await asyncio.sleep(6)  # three visibility timeouts

    async with engine_on(queues, handler, visibility_timeout=2, pollers=2) as engine:
        await until(
            lambda: engine.metrics.registry.get_sample_value("conveyor_processor_succeeded_total") == 1,
            15,
            "done",
        )
    assert deliveries == 1
    await until(lambda: count(sqs, queues.url) == (0, 0), 10, "deleted")


async def test_the_concurrency_bound_is_never_exceeded(queues: Queues, sqs: SQSClient) -> None:
    send(sqs, queues.url, [json.dumps(i) for i in range(40)])
    running = peak = done = 0

    async def handler(message: Message) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        done += 1

    async with engine_on(queues, handler, concurrency=3):
        await until(lambda: done >= 40, 30, "40 handled")
    assert peak == 3


def test_sigterm_releases_buffered_messages_within_seconds(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    # GIVEN a processor with one slow worker and 9 more messages prefetched (one receive of 10)
    send(sqs, queues.url, [json.dumps(i) for i in range(10)])
    record = tmp_path / "deliveries.sqlite"
    env = queues.env(
        CONVEYOR_HANDLER="tests.handlers:work", CONVEYOR_TEST_SLEEP="4", CONVEYOR_TEST_RECORD=str(record),
        CONVEYOR_CONCURRENCY="1", CONVEYOR_PREFETCH="10", CONVEYOR_POLLERS="1",
        CONVEYOR_VISIBILITY_TIMEOUT_SECONDS="60", CONVEYOR_PROCESSOR_PORT="18431",
    )  # fmt: skip
    log = tmp_path / "processor.log"
    with log.open("w") as log_file:
        process = subprocess.Popen([str(BIN / "queue-processor")], env=env, stderr=log_file)
    try:
        wait_for(lambda: count(sqs, queues.url)[1] == 10, 15, "10 messages received")
        # WHEN it is told to stop
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        # THEN the 9 not started are visible again within seconds, not after the 60 s timeout
        wait_for(lambda: count(sqs, queues.url)[0] == 9, 5, "9 released messages visible")
        released_after = time.monotonic() - stopped_at
        # and the running one finishes, is deleted, and the process exits 0
        assert process.wait(20) == 0
    finally:
        process.kill()
        process.wait()
    assert released_after < 3
    with closing(sqlite3.connect(record)) as db:
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (1,)
    assert count(sqs, queues.url) == (9, 0)
    assert "processor_stopped" in log.read_text()


def test_a_second_signal_stops_at_once(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    send(sqs, queues.url, ["1"])
    env = queues.env(
        CONVEYOR_HANDLER="tests.handlers:work", CONVEYOR_TEST_SLEEP="60", CONVEYOR_SHUTDOWN_GRACE_SECONDS="60",
        CONVEYOR_PROCESSOR_PORT="18432",
    )  # fmt: skip
    log = tmp_path / "processor.log"
    with log.open("w") as log_file:
        process = subprocess.Popen([str(BIN / "queue-processor")], env=env, stderr=log_file)
    try:
        wait_for(lambda: count(sqs, queues.url)[1] == 1, 15, "the message is being handled")
        process.send_signal(signal.SIGTERM)  # graceful: would wait up to 60 s for the handler
        wait_for(lambda: "processor_stopping" in log.read_text(), 10, "the graceful stop began")
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert process.wait(10) == 130
        assert time.monotonic() - stopped < 5
    finally:
        process.kill()
        process.wait()


async def test_hostile_handler_results_neither_lose_nor_stop_anything(queues: Queues, sqs: SQSClient) -> None:
    # GIVEN handlers that raise CancelledError, a Retry with NaN, and a batch-style result of the
    # wrong ids are all covered elsewhere one by one; here a mix runs on a real queue
    send(sqs, queues.url, [json.dumps(kind) for kind in ("cancelled", "nan", "fine", "reject")])
    done: list[str] = []

    async def handler(message: Message) -> None:
        kind = message.json()
        first = message.receive_count == 1
        if kind == "cancelled" and first:
            raise asyncio.CancelledError
        if kind == "nan" and first:
            raise Retry(after=math.nan)
        if kind == "reject":
            raise Reject("no")
        done.append(kind)

    async with engine_on(queues, handler) as engine:
        [dead] = await asyncio.to_thread(drain, sqs, queues.dlq_url, 1)
        await until(lambda: sorted(done) == ["cancelled", "fine", "nan"], 20, "all handled")
        await until(lambda: count(sqs, queues.url) == (0, 0), 10, "queue empty")
        assert engine.health.ready
    assert json.loads(dead["Body"]) == "reject"


def start_processor(queues: Queues, tmp_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = queues.env(CONVEYOR_PROCESSOR_PORT=str(free_port()), **extra)
    with (tmp_path / "processor.log").open("w") as log_file:
        return subprocess.Popen([str(BIN / "queue-processor")], env=env, stderr=log_file)


def test_a_thread_outliving_the_grace_keeps_its_message_and_does_not_hold_the_exit(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    # GIVEN a plain-function handler (a thread) that runs far longer than the grace
    send(sqs, queues.url, ["1"])
    process = start_processor(
        queues, tmp_path, CONVEYOR_HANDLER="tests.handlers:blocking", CONVEYOR_TEST_SLEEP="25",
        CONVEYOR_SHUTDOWN_GRACE_SECONDS="1", CONVEYOR_VISIBILITY_TIMEOUT_SECONDS="60",
    )  # fmt: skip
    try:
        wait_for(lambda: count(sqs, queues.url) == (0, 1), 15, "the message is being handled")
        # WHEN it is stopped
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        # THEN it exits after the grace without waiting for the thread
        assert process.wait(15) == 0
        assert time.monotonic() - stopped < 8
    finally:
        process.kill()
        process.wait()
    # and the message was not made visible while its handler may still run: it waits out its timeout
    assert count(sqs, queues.url) == (0, 1)


def test_a_second_signal_stops_at_once_even_with_a_thread_running(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    send(sqs, queues.url, ["1"])
    process = start_processor(
        queues, tmp_path, CONVEYOR_HANDLER="tests.handlers:blocking", CONVEYOR_TEST_SLEEP="25",
        CONVEYOR_SHUTDOWN_GRACE_SECONDS="60",
    )  # fmt: skip
    try:
        wait_for(lambda: count(sqs, queues.url) == (0, 1), 15, "the message is being handled")
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: "processor_stopping" in (tmp_path / "processor.log").read_text(), 10, "graceful stop began")
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert process.wait(15) == 130
        assert time.monotonic() - stopped < 4
    finally:
        process.kill()
        process.wait()


async def test_a_batch_handler_on_a_real_queue(queues: Queues, sqs: SQSClient) -> None:
    send(sqs, queues.url, [json.dumps(i) for i in range(30)] + ["not json"])
    seen: list[int] = []

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        failures: dict[str, BaseException] = {}
        for message in messages:
            try:
                seen.append(message.json())
            except InvalidJsonError as exc:
                failures[message.message_id] = exc
        return failures

    with ThreadPoolExecutor(1) as pool:
        async with engine_on(queues, adapt(handle, pool)):
            [dead] = await asyncio.to_thread(drain, sqs, queues.dlq_url, 1)
            await until(lambda: count(sqs, queues.url) == (0, 0), 15, "queue empty")
    assert sorted(seen) == list(range(30))
    assert dead["Body"] == "not json"


def test_a_queue_gone_while_a_thread_handler_runs_ends_the_process(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    sqs.send_message(QueueUrl=queues.url, MessageBody="1")
    process = start_processor(
        queues, tmp_path, CONVEYOR_HANDLER="tests.handlers:blocking", CONVEYOR_TEST_SLEEP="40",
        CONVEYOR_SHUTDOWN_GRACE_SECONDS="1", CONVEYOR_WAIT_TIME_SECONDS="1",
    )  # fmt: skip
    log = tmp_path / "processor.log"
    try:
        wait_for(lambda: count(sqs, queues.url) == (0, 1), 15, "the message is being handled")
        # WHEN the queue becomes unusable (deleted; AccessDenied after an IAM change is the same path)
        sqs.delete_queue(QueueUrl=queues.url)
        wait_for(lambda: "queue_unusable" in log.read_text(), 15, "the poller saw the fatal error")
        gone = time.monotonic()
        # THEN the process exits non-zero within grace + 5 s, without waiting for the thread
        code = process.wait(30)
        assert time.monotonic() - gone < 6, f"exited {code} only after {time.monotonic() - gone:.0f} s"
        assert code == 1
    finally:
        process.kill()
        process.wait()
    assert "queue-processor:" in log.read_text()  # the one readable line
