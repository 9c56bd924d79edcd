"""Faults, each asserting on the queue and the record of deliveries, not on logs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor import metadata
from conveyor.localstack import LocalStack
from tests.e2e.figures import report
from tests.e2e.services import (
    Posted,
    Record,
    duplicates,
    elapsed,
    post_messages,
    start_processor,
    stopped_at_the_end,
    writer,
)
from tests.localstack_fixtures import (
    LOCALSTACK_PYTHON,
    Queues,
    boto_client,
    count,
    drain,
    freeze,
    make_queues,
    thaw,
    wait_for,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

OUTAGE_SECONDS = 10


def test_sqs_outage_gives_503_and_everything_accepted_is_processed(tmp_path: Path) -> None:
    # GIVEN a stack on a LocalStack of its own, under a steady load. The outage is a SIGSTOP of
    # LocalStack's process group for 10 s, then SIGCONT: a restarted LocalStack would have lost its
    # queues (no persistence), a frozen one keeps them, and to its clients it is just as gone.
    stack = LocalStack.start(LOCALSTACK_PYTHON, tmp_path / "own-localstack")
    try:
        queues = make_queues(stack.endpoint)
        record = Record(tmp_path / "record.sqlite")
        fast_fail = {"CONVEYOR_SQS_READ_TIMEOUT_SECONDS": "2", "CONVEYOR_SQS_MAX_ATTEMPTS": "2"}
        processor = start_processor(
            queues, tmp_path, record.path, CONVEYOR_WAIT_TIME_SECONDS="1", CONVEYOR_POLL_ERROR_BACKOFF_MAX_SECONDS="2",
            **fast_fail,
        )  # fmt: skip
        with stopped_at_the_end(processor):
            with writer(queues, tmp_path, **fast_fail) as api:
                posted = Posted()
                load = threading.Thread(
                    target=lambda: posted.results.update(post_messages(api.url, 600, 4, 0.05).results)
                )
                load.start()
                wait_for(lambda: len(record.rows()) >= 20, 30, "load under way")
                # WHEN SQS stops answering
                freeze(stack)
                paused_at = time.monotonic()
                wait_for(lambda: not processor.ready(), 20, "processor not ready while SQS is down")
                time.sleep(max(0.0, OUTAGE_SECONDS - elapsed(paused_at)))  # the outage lasts its full length
                thaw(stack)
                resumed_at = time.monotonic()
                wait_for(processor.ready, 30, "processor ready again")
                ready_after = elapsed(resumed_at)
                load.join(120)
            record.wait_for_keys(posted.accepted, 60)
            processed_after = elapsed(resumed_at)
    finally:
        thaw(stack)
        stack.stop()
    statuses = posted.statuses()
    seen = record.keys()
    # THEN the writer said 503 (with Retry-After, checked as it came) while SQS was down, and every
    # message it answered 202 for was processed; nothing processed was never posted. A 503 after a
    # timed-out send may still have reached SQS: such a message may be processed (at least once).
    assert statuses[503] > 0, statuses
    assert set(statuses) <= {202, 503}, statuses
    assert posted.accepted <= set(seen)
    assert set(seen) <= set(posted.results)
    report("sqs_outage", outage_seconds=OUTAGE_SECONDS, posted=len(posted.results), accepted=statuses[202],
           answered_503=statuses[503], processed=len(seen), duplicates=duplicates(seen),
           processor_ready_seconds_after_resume=ready_after,
           all_accepted_processed_seconds_after_resume=processed_after)  # fmt: skip


def test_random_handler_failures_end_processed(localstack: LocalStack, sqs: SQSClient, tmp_path: Path) -> None:
    # maxReceiveCount 20: with 5 (the default) one message in 3,125 fails five times in a row, and
    # 300 messages would then end in the DLQ in about one run in eleven (seen in CI). With 20 it is
    # 300 x 0.2^20, about 3e-12: every message ends processed.
    queues = make_queues(localstack.endpoint, max_receive_count=20)
    record = Record(tmp_path / "record.sqlite")
    with writer(queues, tmp_path) as api:
        posted = post_messages(api.url, 300)
    with stopped_at_the_end(start_processor(
        queues, tmp_path, record.path, "tests.handlers:flaky", CONVEYOR_RETRY_BASE_SECONDS="0",
        CONVEYOR_RETRY_MAX_SECONDS="0", CONVEYOR_TEST_FAIL_RATE="0.2",
    )):  # fmt: skip
        record.wait_for_keys(posted.accepted, 90)
        wait_for(lambda: count(sqs, queues.url) == (0, 0), 30, "queue empty")
    seen = record.keys()
    assert set(seen) == posted.accepted
    assert count(sqs, queues.dlq_url) == (0, 0)
    report("handler_fails_20_percent", messages=300, processed=len(seen), duplicates=duplicates(seen))


def test_a_handler_that_always_fails_dead_letters_everything(localstack: LocalStack, tmp_path: Path) -> None:
    queues = make_queues(localstack.endpoint, max_receive_count=3)
    sqs = boto_client(localstack.endpoint)
    record = Record(tmp_path / "record.sqlite")
    with writer(queues, tmp_path) as api:
        posted = post_messages(api.url, 100)
    # Without the breaker: with it, a queue of nothing but failures drains at the probes' pace (its
    # own test, tests/e2e/test_flow_control.py); this one is about what dead-lettering records.
    with stopped_at_the_end(start_processor(
        queues, tmp_path, record.path, "tests.handlers:always_fail",
        CONVEYOR_RETRY_BASE_SECONDS="0", CONVEYOR_RETRY_MAX_SECONDS="0", CONVEYOR_BREAKER="false",
    )):  # fmt: skip
        dead = drain(sqs, queues.dlq_url, 100, timeout=90)
        wait_for(lambda: count(sqs, queues.url) == (0, 0), 30, "queue empty")
    dead_keys = [json.loads(m["Body"])["key"] for m in dead]
    # processed + dead-lettered = accepted, exactly
    assert record.keys() == {}
    assert sorted(dead_keys) == sorted(posted.accepted)
    records = [json.loads(m["MessageAttributes"][metadata.DEAD_LETTER]["StringValue"]) for m in dead]
    assert {(r["receive_count"], r["retries_exhausted"]) for r in records} == {(3, True)}
    report("handler_always_fails", messages=100, processed=0, dead_lettered=len(dead_keys))


def test_a_handler_slower_than_the_visibility_timeout_is_delivered_once(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    record = Record(tmp_path / "record.sqlite")
    with writer(queues, tmp_path) as api:
        posted = post_messages(api.url, 20)
    with stopped_at_the_end(start_processor(
        queues, tmp_path, record.path, CONVEYOR_CONCURRENCY="20", CONVEYOR_VISIBILITY_TIMEOUT_SECONDS="5",
        CONVEYOR_TEST_SLEEP="12",
    )):  # fmt: skip
        record.wait_for_keys(posted.accepted, 40)
        wait_for(lambda: count(sqs, queues.url) == (0, 0), 10, "queue empty")
    rows = record.rows()
    assert len(rows) == 20
    assert {receive_count for _, _, _, receive_count in rows} == {1}
    report("slow_handler", messages=20, handler_seconds=12, visibility_timeout=5, deliveries=len(rows))


def test_foreign_messages_are_processed_or_dead_lettered_without_a_crash(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    odd_attributes = {
        "binary": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
        "number": {"DataType": "Number.float", "StringValue": "-1.5e3"},
        "custom": {"DataType": "String.custom", "StringValue": "x"},
        "conveyor.dead_letter": {"DataType": "String", "StringValue": "not json, forged"},
    } | {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(6)}
    good = [json.dumps({"key": f"good{i}"}) for i in range(3)]
    bad = ["plain text", "{broken json", "\U0001f600 emoji", " "]
    for body in good + bad:
        sqs.send_message(QueueUrl=queues.url, MessageBody=body, MessageAttributes=odd_attributes)  # type: ignore[arg-type]
    record = Record(tmp_path / "record.sqlite")
    with stopped_at_the_end(start_processor(queues, tmp_path, record.path)) as processor:
        dead = drain(sqs, queues.dlq_url, len(bad), timeout=30)
        record.wait_for_keys({f"good{i}" for i in range(3)}, 30)
        wait_for(lambda: count(sqs, queues.url) == (0, 0), 10, "queue empty")
        assert processor.ready()
    assert sorted(m["Body"] for m in dead) == sorted(bad)
    for message in dead:  # the originals kept (10 with ours: the overflow folded into our record)
        attributes = message["MessageAttributes"]
        assert len(attributes) == 10
        assert attributes["binary"]["BinaryValue"] == b"\x00\xff"
        assert json.loads(attributes[metadata.DEAD_LETTER]["StringValue"])["error_type"].endswith("InvalidJsonError")
    report("foreign_messages", good=len(good), not_json=len(bad), dead_lettered=len(dead))
