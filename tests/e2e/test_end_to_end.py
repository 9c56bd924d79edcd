"""End to end: writer and processors as real processes, messages posted over HTTP by concurrent
clients, every delivery recorded by the handler. Nothing accepted is lost; nothing is invented."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.e2e.figures import report
from tests.e2e.services import (
    Proc,
    Record,
    duplicates,
    elapsed,
    post_messages,
    start_processor,
    stopped_at_the_end,
    writer,
)
from tests.localstack_fixtures import Queues, count, drain, freeze, thaw, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from conveyor.localstack import LocalStack


def test_every_accepted_message_is_processed_with_its_request_id(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    record = Record(tmp_path / "record.sqlite")
    processors = [start_processor(queues, tmp_path, record.path, CONVEYOR_CONCURRENCY="20") for _ in range(2)]
    try:
        with writer(queues, tmp_path) as api:
            started = time.monotonic()
            posted = post_messages(api.url, 400, clients=16)
            assert posted.statuses() == {202: 400}
            record.wait_for_keys(posted.accepted, 60)
            took = elapsed(started)
    finally:
        codes = [p.stop() for p in processors]
    rows = record.rows()
    seen = record.keys()
    # every 202 processed at least once, and nothing processed that was not accepted
    assert set(seen) == posted.accepted
    # the request id posted is the one the handler saw, with the SQS message id answered
    for message_id, body, request_id, _ in rows:
        key = body.split('"')[3]
        status, answered_id, posted_request_id = posted.results[key]
        assert (status, answered_id, posted_request_id) == (202, message_id, request_id)
    assert codes == [0, 0]
    assert count(sqs, queues.url) == (0, 0)
    report("end_to_end", messages=400, processors=2, duplicates=duplicates(seen), seconds=took)


def test_kill_9_of_one_processor_loses_nothing(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    # GIVEN three processors working through 600 messages, with a short visibility timeout
    record = Record(tmp_path / "record.sqlite")
    settings = {
        "CONVEYOR_CONCURRENCY": "10",
        "CONVEYOR_VISIBILITY_TIMEOUT_SECONDS": "5",
        "CONVEYOR_WAIT_TIME_SECONDS": "1",
    }
    with writer(queues, tmp_path) as api:
        posted = post_messages(api.url, 600, clients=16)
    assert posted.statuses() == {202: 600}
    processors = [start_processor(queues, tmp_path, record.path, **settings) for _ in range(3)]
    try:
        wait_for(lambda: len(record.rows()) >= 150, 60, "a quarter processed")
        # WHEN one is killed with SIGKILL mid-run, then started again
        processors[0].signal(signal.SIGKILL)
        processors[0].process.wait(10)
        killed_at = time.monotonic()
        processors[0] = start_processor(queues, tmp_path, record.path, **settings)
        # THEN every message is processed
        record.wait_for_keys(posted.accepted, 90)
        recovered = elapsed(killed_at)
    finally:
        codes = [p.stop() for p in processors]
    seen = record.keys()
    # at most what the killed one held: concurrency + prefetch unhandled, plus handled but not yet deleted
    held_at_most = 10 + 10 + 10
    assert set(seen) == posted.accepted
    assert duplicates(seen) <= held_at_most
    assert codes == [0, 0, 0]
    report("kill_9", messages=600, processors=3, duplicates=duplicates(seen), bound=held_at_most,
           seconds_to_all_processed_after_kill=recovered)  # fmt: skip


def test_sigterm_under_load_exits_in_grace_and_loses_nothing(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    record = Record(tmp_path / "record.sqlite")
    with writer(queues, tmp_path) as api:
        posted = post_messages(api.url, 300, clients=16)
    grace = 5
    first = start_processor(
        queues, tmp_path, record.path, CONVEYOR_CONCURRENCY="10", CONVEYOR_SHUTDOWN_GRACE_SECONDS=str(grace)
    )
    wait_for(lambda: len(record.rows()) >= 50, 60, "some processed")
    first.signal(signal.SIGTERM)
    stopping = time.monotonic()
    assert first.process.wait(grace + 5) == 0
    stop_seconds = elapsed(stopping)
    done_by_first = len(record.rows())
    with stopped_at_the_end(start_processor(queues, tmp_path, record.path, CONVEYOR_CONCURRENCY="10")):
        record.wait_for_keys(posted.accepted, 60)
    seen = record.keys()
    assert set(seen) == posted.accepted
    assert duplicates(seen) == 0
    report("sigterm_under_load", messages=300, stop_seconds=stop_seconds, grace=grace,
           processed_before_stop=done_by_first, duplicates=0)  # fmt: skip


def test_writer_sigterm_answers_what_waits_for_a_batch(
    localstack: LocalStack, queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    # GIVEN a writer that waits up to 1 s for company before each SendMessageBatch while another is in
    # flight, and a first call held in flight: SQS frozen for the moment (well within the writer's
    # 5 s read timeout), so the next posts wait for their batch
    with writer(queues, tmp_path, CONVEYOR_BATCH_LINGER_MS="1000") as api:

        async def post_while_stopping() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
                freeze(localstack)
                try:
                    posts = [asyncio.create_task(client.post("/messages", json={"body": i})) for i in range(5)]
                    await until_waiting(api)
                    api.signal(signal.SIGTERM)  # WHEN it is stopped while they wait
                finally:
                    thaw(localstack)
                return list(await asyncio.gather(*posts))

        responses = asyncio.run(post_while_stopping())
        code = api.process.wait(30)
    # THEN every caller is answered 202, the messages are on the queue, and the writer exits 0
    assert [r.status_code for r in responses] == [202] * 5
    assert code == 0
    bodies = sorted(int(m["Body"]) for m in drain(sqs, queues.url, 5))
    assert bodies == [0, 1, 2, 3, 4]


async def until_waiting(api: Proc) -> None:
    """Until the writer's metrics show the five posts in progress (waiting for their batch)."""
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=api.url) as client:
        while time.monotonic() < deadline:
            if 'conveyor_writer_requests_in_progress{route="/messages"} 5.0' in (await client.get("/metrics")).text:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the posts never reached the writer")
