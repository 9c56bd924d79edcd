"""The consumer engine against the in-memory SQS: what happens on the queue for each handler result,
concurrency and back-pressure, coalesced deletes, heartbeat, shutdown, poll errors."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor import BatchFailures, Message, Reject, Retry, batch_handler, metadata
from conveyor.processor.engine import Engine
from conveyor.processor.user_code import adapt
from conveyor.sqs.errors import SqsError
from conveyor.testing.sqs import InMemorySqs, as_client, client_error
from tests.unit.engine_support import DLQ, QUEUE, config_for, left, running, sample, until


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


async def test_every_message_is_handled_and_deleted_in_batches(fake: InMemorySqs) -> None:
    for i in range(50):
        fake.put(QUEUE, json.dumps({"i": i}))
    seen: list[int] = []

    async def handler(message: Message) -> None:
        seen.append(message.json()["i"])

    async with running(fake, handler) as engine:
        await until(lambda: left(fake) == 0)
    assert sorted(seen) == list(range(50))
    assert len(fake.queues[QUEUE].deleted) == 50
    assert fake.count("DeleteMessageBatch") <= 10  # coalesced: at most one per ten messages
    assert sample(engine, "conveyor_processor_succeeded_total") == 50


async def test_concurrency_is_bounded_and_one_slow_message_blocks_nothing(fake: InMemorySqs) -> None:
    for i in range(40):
        fake.put(QUEUE, "slow" if i == 0 else "fast")
    running_now = peak = finished = 0
    outstanding: list[int] = []  # received but not yet handled, seen at each handler start
    fast_done = asyncio.Event()
    done = 0

    async def handler(message: Message) -> None:
        nonlocal running_now, peak, done, finished
        running_now += 1
        peak = max(peak, running_now)
        outstanding.append(fake.received_total - finished)
        try:
            if message.body == "slow":
                await fast_done.wait()
            else:
                await asyncio.sleep(0.01)
                done += 1
                if done == 39:
                    fast_done.set()
        finally:
            running_now -= 1
            finished += 1

    async with running(fake, handler, concurrency=4, prefetch=10) as engine:
        await until(lambda: left(fake) == 0)
    # THEN never more than 4 handlers at once, the slow one did not hold up the other 39, and the
    # process never held more unhandled messages than concurrency + prefetch
    assert peak == 4
    assert max(outstanding) <= engine.config.capacity == 14


async def test_polls_wait_for_ten_free_slots(fake: InMemorySqs) -> None:
    for _ in range(60):
        fake.put(QUEUE, "x")

    async def handler(message: Message) -> None:
        await asyncio.sleep(0.02)

    async with running(fake, handler, concurrency=10, prefetch=10):
        await until(lambda: left(fake) == 0)
    sizes = [kwargs["MaxNumberOfMessages"] for op, kwargs in fake.calls if op == "ReceiveMessage"]
    assert set(sizes) == {10}
    assert fake.count("ReceiveMessage") <= 8  # 60 messages: about one receive per ten


async def test_a_failing_handler_is_retried_by_visibility_change(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    attempts: list[int] = []

    async def handler(message: Message) -> None:
        attempts.append(message.receive_count)
        if len(attempts) < 3:
            raise RuntimeError("flaky")

    async with running(fake, handler):
        await until(lambda: left(fake) == 0)
    assert attempts == [1, 2, 3]  # the same message again (a visibility change keeps the count)
    assert fake.count("ChangeMessageVisibilityBatch") >= 2
    assert fake.count("SendMessage") == 0


async def test_retry_after_sets_the_delay(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Retry(after=3)

    async with running(fake, handler):
        await until(lambda: fake.count("ChangeMessageVisibilityBatch") == 1)
        [(_, kwargs)] = [c for c in fake.calls if c[0] == "ChangeMessageVisibilityBatch"]
        assert kwargs["Entries"][0]["VisibilityTimeout"] == 3


async def test_reject_goes_to_the_dlq_at_once_with_metadata(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "order", {"tenant": {"DataType": "String", "StringValue": "acme"}})

    async def handler(message: Message) -> None:
        raise Reject("unknown customer")

    async with running(fake, handler) as engine:
        await until(lambda: left(fake, DLQ) == 1 and left(fake) == 0)
    [dead] = fake.queues[DLQ].messages.values()
    assert dead.body == "order"
    assert dead.attributes["tenant"]["StringValue"] == "acme"
    record = json.loads(dead.attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"] == "conveyor.message.Reject"
    assert record["error_message"] == "unknown customer"
    assert record["receive_count"] == 1
    assert record["original_message_id"] in {m.message_id for m in fake.queues[QUEUE].deleted}
    assert sample(engine, "conveyor_processor_dead_lettered_total", reason="rejected") == 1
    kind = "conveyor.message.Reject"
    assert sample(engine, "conveyor_processor_dead_lettered_total", reason="rejected", error_type=kind) == 1
    assert sample(engine, "conveyor_processor_failed_total", error_type=kind) == 1


async def test_body_that_is_not_json_is_dead_lettered_not_looped(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "{not json")
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        message.json()

    async with running(fake, handler):
        await until(lambda: left(fake, DLQ) == 1)
    assert calls == 1
    record = json.loads(next(iter(fake.queues[DLQ].messages.values())).attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"] == "conveyor.message.InvalidJsonError"


async def test_exhausted_retries_dead_letter_with_the_last_error(fake: InMemorySqs) -> None:
    fake.create(QUEUE, max_receive_count=3)
    fake.put(QUEUE, "x")
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"failure {calls}")

    async with running(fake, handler, max_receive_count=3):
        await until(lambda: left(fake, DLQ) == 1, timeout=10)
    assert calls == 3
    record = json.loads(next(iter(fake.queues[DLQ].messages.values())).attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_message"] == "failure 3"
    assert record["retries_exhausted"] is True


async def test_dlq_send_failure_deletes_nothing(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    fake.fail_calls["SendMessage"].append(client_error("ServiceUnavailable", "SendMessage", 503))
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise Reject("no")

    async with running(fake, handler):
        await until(lambda: left(fake, DLQ) == 1, timeout=5)
    assert calls == 2  # the first copy failed: the message came back and was rejected again
    # THEN nothing was deleted until a copy had succeeded
    steps = [op for op, _ in fake.calls if op in {"SendMessage", "DeleteMessageBatch"}]
    assert steps == ["SendMessage", "SendMessage", "DeleteMessageBatch"]
    assert len(fake.queues[QUEUE].deleted) == 1


async def test_a_slow_handler_is_extended_not_delivered_twice(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "slow")
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(2.5)  # two and a half times the visibility timeout below

    async with running(fake, handler, visibility_timeout=1, pollers=2) as engine:
        await until(lambda: left(fake) == 0, timeout=5)
    assert calls == 1
    assert fake.queues[QUEUE].deleted[0].receive_count == 1
    assert sample(engine, "conveyor_processor_visibility_extended_total") >= 2


async def test_shutdown_releases_unstarted_messages_at_once(fake: InMemorySqs) -> None:
    for _ in range(10):
        fake.put(QUEUE, "x")
    started = asyncio.Event()
    finish = asyncio.Event()

    async def handler(message: Message) -> None:
        started.set()
        await finish.wait()

    engine = Engine(as_client(fake), config_for(fake, concurrency=1, prefetch=10), handler)
    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(started.wait(), 5)
    await until(lambda: engine.buffer.qsize() == 9)  # one receive of 10: one running, 9 buffered
    engine.stop()

    def visible() -> int:
        now = asyncio.get_running_loop().time()
        return sum(1 for m in fake.queues[QUEUE].messages.values() if m.visible_at <= now)

    # THEN the buffered messages are visible again at once (well before the 2 s timeout), while
    # the running one is still held
    await until(lambda: visible() == 9, timeout=1)
    assert sample(engine, "conveyor_processor_released_total") == 9
    finish.set()
    await asyncio.wait_for(task, 5)
    assert len(fake.queues[QUEUE].deleted) == 1  # the running one finished and was deleted
    assert left(fake) == 9
    assert all(m.receive_count == 1 for m in fake.queues[QUEUE].messages.values())


async def test_messages_a_receive_brings_in_during_shutdown_are_released(fake: InMemorySqs) -> None:
    # GIVEN SQS has handed out messages but its answer is still on the way when the stop comes
    fake.receive_delay = 0.1
    for _ in range(5):
        fake.put(QUEUE, "x")

    async def handler(message: Message) -> None:
        raise AssertionError("nothing starts after the stop")

    engine = Engine(as_client(fake), config_for(fake), handler)
    task = asyncio.create_task(engine.run())
    await until(lambda: fake.received_total == 5)
    engine.stop()
    await asyncio.wait_for(task, 5)
    # THEN they are visible again now, not after the visibility timeout
    now = asyncio.get_running_loop().time()
    assert all(m.visible_at <= now for m in fake.queues[QUEUE].messages.values())
    assert sample(engine, "conveyor_processor_released_total") == 5


async def test_grace_period_cancels_and_releases_a_stuck_handler(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    started = asyncio.Event()

    async def handler(message: Message) -> None:
        started.set()
        await asyncio.Event().wait()

    engine = Engine(as_client(fake), config_for(fake, shutdown_grace=0.2), handler)
    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(started.wait(), 5)
    engine.stop()
    await asyncio.wait_for(task, 5)
    [message] = fake.queues[QUEUE].messages.values()
    assert message.visible_at <= asyncio.get_running_loop().time()
    assert fake.queues[QUEUE].deleted == []


async def test_poll_errors_back_off_and_recover(fake: InMemorySqs) -> None:
    for _ in range(3):
        fake.fail_calls["ReceiveMessage"].append(client_error("ThrottlingException", "ReceiveMessage"))
    fake.put(QUEUE, "x")
    handled = asyncio.Event()
    waits: list[tuple[float, bool]] = []  # each backoff, and whether the engine said ready meanwhile

    async def handler(message: Message) -> None:
        handled.set()

    async def recording_sleep(seconds: float) -> None:
        waits.append((seconds, engine.health.ready))
        await asyncio.sleep(0)

    config = config_for(fake, poll_error_backoff_max=0.3)
    engine = Engine(as_client(fake), config, handler, sleep=recording_sleep, rand=lambda: 1.0)
    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(handled.wait(), 5)
    await until(lambda: engine.health.ready)
    engine.stop()
    await asyncio.wait_for(task, 5)
    # THEN each failed poll waited longer (full jitter at its top: 0.1 s x 2^n, capped at 0.3 s),
    # the engine was not ready while polls failed, and it recovered
    assert [seconds for seconds, _ in waits] == pytest.approx([0.2, 0.3, 0.3])
    assert [ready for _, ready in waits] == [False, False, False]


async def test_a_queue_that_disappears_stops_the_engine(fake: InMemorySqs) -> None:
    fake.fail_calls["ReceiveMessage"].append(client_error("AWS.SimpleQueueService.NonExistentQueue", "ReceiveMessage"))

    async def handler(message: Message) -> None:
        raise AssertionError("never called")

    engine = Engine(as_client(fake), config_for(fake), handler)
    with pytest.raises(SqsError, match="NonExistentQueue"):
        await asyncio.wait_for(engine.run(), 5)


async def test_refused_deletes_are_counted(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    fake.fail_entries["DeleteMessageBatch"] = lambda e: {
        "Code": "ReceiptHandleIsInvalid",
        "SenderFault": True,
    }

    async def handler(message: Message) -> None:
        return None

    async with running(fake, handler) as engine:
        await until(lambda: sample(engine, "conveyor_processor_lease_lost_total", operation="delete") == 1)
        assert len(engine.inflight) == 0


async def test_plain_functions_run_in_the_thread_pool(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    threads: list[str] = []

    def handler(message: Message) -> None:
        time.sleep(0.01)
        threads.append(threading.current_thread().name)

    with ThreadPoolExecutor(4, thread_name_prefix="handler") as pool:
        async with running(fake, adapt(handler, pool)):
            await until(lambda: left(fake) == 0)
    assert threads[0].startswith("handler")


async def test_a_batch_handler_gets_messages_as_received_and_all_are_deleted(fake: InMemorySqs) -> None:
    for i in range(25):
        fake.put(QUEUE, str(i))
    sizes: list[int] = []

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        sizes.append(len(messages))
        return None

    with ThreadPoolExecutor(2) as pool:
        async with running(fake, adapt(handle, pool), concurrency=2):
            await until(lambda: left(fake) == 0)
    assert sum(sizes) == 25
    assert max(sizes) == 10  # a receive of ten is handled as one call
    assert len(fake.queues[QUEUE].deleted) == 25


async def test_a_batch_handler_reports_failures_per_message(fake: InMemorySqs) -> None:
    for body in ("ok-1", "reject", "flaky", "ok-2"):
        fake.put(QUEUE, body)
    calls: list[list[str]] = []

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        calls.append([m.body for m in messages])
        failures: dict[str, BaseException] = {}
        for message in messages:
            if message.body == "reject":
                failures[message.message_id] = Reject("bad")
            elif message.body == "flaky" and message.receive_count == 1:
                failures[message.message_id] = RuntimeError("try again")
        return failures

    with ThreadPoolExecutor(2) as pool:
        async with running(fake, adapt(handle, pool)):
            await until(lambda: left(fake) == 0 and left(fake, DLQ) == 1)
    # THEN the rejected one is dead-lettered, the flaky one came back alone and then succeeded
    assert sorted(calls[0]) == ["flaky", "ok-1", "ok-2", "reject"]
    assert calls[1:] == [["flaky"]]
    assert [m.body for m in fake.queues[DLQ].messages.values()] == ["reject"]
    assert sorted(m.body for m in fake.queues[QUEUE].deleted) == ["flaky", "ok-1", "ok-2", "reject"]


async def test_a_batch_handler_that_raises_fails_the_whole_batch(fake: InMemorySqs) -> None:
    for i in range(3):
        fake.put(QUEUE, str(i))
    counts: list[list[int]] = []

    @batch_handler
    def handle(messages: list[Message]) -> BatchFailures:  # a plain function: run in the pool
        counts.append(sorted(m.receive_count for m in messages))
        if len(counts) == 1:
            raise ConnectionError("database down")
        return {}

    with ThreadPoolExecutor(2) as pool:
        async with running(fake, adapt(handle, pool)):
            await until(lambda: left(fake) == 0)
    assert counts[0] == [1, 1, 1]
    assert sum(len(c) for c in counts[1:]) == 3
    assert all(c == 2 for batch in counts[1:] for c in batch)


async def test_a_malformed_batch_result_is_retried_not_acked(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    results: list[object] = [["not", "a", "mapping"], None]

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        return results.pop(0)  # type: ignore[return-value]  # the wrong type is the point

    with ThreadPoolExecutor(1) as pool:
        async with running(fake, adapt(handle, pool)):
            await until(lambda: left(fake) == 0)
    assert fake.queues[QUEUE].deleted[0].receive_count == 2
