"""The holes an adversarial review found in the processor's "loses nothing" (issue 16), each shown on
the in-memory SQS: what ends on the queue, in the DLQ, and how often the handler ran."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor import BatchFailures, Message, Reject, Retry, batch_handler, metadata
from conveyor.processor.backoff import retry_delay
from conveyor.processor.engine import Engine
from conveyor.processor.heartbeat import Heartbeat
from conveyor.processor.lease import InFlight, Lease
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.user_code import adapt
from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS
from tests.fakes import FakeSqs, as_client, client_error
from tests.unit.engine_support import DLQ, QUEUE, config_for, left, running, sample, until


@pytest.fixture
def fake() -> FakeSqs:
    sqs = FakeSqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


def record_of(fake: FakeSqs) -> dict[str, object]:
    [dead] = fake.queues[DLQ].messages.values()
    record: dict[str, object] = json.loads(dead.attributes[metadata.DEAD_LETTER]["StringValue"])
    return record


# --- 1. a batch result naming ids that were not in the batch ------------------------------------


async def test_a_batch_result_naming_unknown_ids_fails_the_whole_batch(fake: FakeSqs) -> None:
    for i in range(3):
        fake.put(QUEUE, str(i))
    calls: list[list[int]] = []

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        calls.append(sorted(m.receive_count for m in messages))
        if len(calls) == 1:  # keyed by the user's own ids: not message ids of this batch
            return {f"order-{m.body}": RuntimeError("failed") for m in messages[:1]}
        return None

    with ThreadPoolExecutor(1) as pool:
        async with running(fake, adapt(handle, pool)):
            await until(lambda: left(fake) == 0)
    # THEN nothing was deleted after the malformed answer: every message came back once more
    assert calls[0] == [1, 1, 1]
    assert sorted(m.receive_count for m in fake.queues[QUEUE].deleted) == [2, 2, 2]


# --- 3. the dead-letter copy keeps every value and always fits ------------------------------------


async def test_binary_attributes_past_the_ninth_keep_their_value_in_the_record(fake: FakeSqs) -> None:
    attributes: dict[str, dict[str, object]] = {
        f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(9)
    }
    attributes["z-blob"] = {"DataType": "Binary.gzip", "BinaryValue": b"\x00\xffraw"}
    fake.put(QUEUE, "x", attributes)

    async def handler(message: Message) -> None:
        raise Reject("no")

    async with running(fake, handler):
        await until(lambda: left(fake, DLQ) == 1 and left(fake) == 0)
    overflow = record_of(fake)["overflow_attributes"]
    assert overflow == {"z-blob": {"DataType": "Binary.gzip", "BinaryValue": base64.b64encode(b"\x00\xffraw").decode()}}


async def test_a_reject_that_fits_its_queue_but_not_with_its_record_is_dead_lettered_at_once(fake: FakeSqs) -> None:
    # GIVEN queues of 1 KiB and a body close to that limit
    fake.queues[QUEUE].attributes["MaximumMessageSize"] = "1024"
    fake.queues[DLQ].attributes["MaximumMessageSize"] = "1024"
    fake.put(QUEUE, "b" * 900, {"tenant": {"DataType": "String", "StringValue": "acme"}})
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise Reject("bad " * 300)

    async with running(fake, handler, dlq_max_message_bytes=1024):
        await until(lambda: left(fake, DLQ) == 1 and left(fake) == 0)
    # THEN it was dead-lettered on its first receive, with as much of its story as fits
    assert calls == 1
    [dead] = fake.queues[DLQ].messages.values()
    assert dead.body == "b" * 900
    assert "original_message_id" in record_of(fake)


# --- 4. a failed extension does not end the heartbeat ---------------------------------------------


async def test_a_throttled_extension_is_retried_and_the_message_is_not_delivered_twice(fake: FakeSqs) -> None:
    fake.put(QUEUE, "slow")
    for _ in range(2):
        fake.fail_calls["ChangeMessageVisibilityBatch"].append(
            client_error("ThrottlingException", "ChangeMessageVisibilityBatch")
        )
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(3)  # three visibility timeouts

    async with running(fake, handler, visibility_timeout=1, pollers=2):
        await until(lambda: left(fake) == 0, timeout=8)
    assert calls == 1
    assert fake.queues[QUEUE].deleted[0].receive_count == 1


async def test_a_message_no_longer_in_flight_ends_its_heartbeat(fake: FakeSqs) -> None:
    fake.put(QUEUE, "slow")
    gone: set[str] = set()

    def refuse_first(entry: dict[str, object]) -> dict[str, object] | None:
        handle = str(entry["ReceiptHandle"])
        if not gone or handle in gone:  # the first receipt handle the heartbeat uses is gone for good
            gone.add(handle)
            return {"Code": "MessageNotInflight", "SenderFault": True}
        return None

    fake.fail_entries["ChangeMessageVisibilityBatch"] = refuse_first
    finish = asyncio.Event()

    async def handler(message: Message) -> None:
        await finish.wait()

    async with running(fake, handler, visibility_timeout=1) as engine:
        await until(lambda: sample(engine, "conveyor_processor_lease_lost_total", operation="change_visibility") == 1)
        # WHEN the message comes back (its visibility ran out) and its new lease is extended twice
        await until(lambda: len([h for h in extensions_tried(fake) if h not in gone]) >= 2, timeout=5)
        finish.set()
    # THEN the lease SQS no longer held was never extended again
    assert extensions_tried(fake).count(next(iter(gone))) == 1


def extensions_tried(fake: FakeSqs) -> list[str]:
    """Receipt handles of every extension sent, in order."""
    calls = [kwargs for op, kwargs in fake.calls if op == "ChangeMessageVisibilityBatch"]
    return [entry["ReceiptHandle"] for kwargs in calls for entry in kwargs["Entries"]]


class RecordingAcker:
    """Takes extensions and answers none of them until told to."""

    def __init__(self) -> None:
        self.sent: list[tuple[Lease, int, Callable[[], None]]] = []

    def extend(self, lease: Lease, seconds: int, on_ok: Callable[[], None]) -> None:
        lease.extending += 1
        self.sent.append((lease, seconds, on_ok))


def test_extensions_do_not_pile_up_while_one_is_under_way() -> None:
    clock = [100.0]
    lease = Lease("m", "h", "x", {}, {}, received_at=100.0, visible_until=101.0)
    lease.start()
    inflight = InFlight()
    inflight.add(lease)
    acker = RecordingAcker()
    heartbeat = Heartbeat(inflight, acker, ProcessorMetrics(), 1.0, clock=lambda: clock[0])

    def beat_at(now: float) -> int:
        clock[0] = now
        heartbeat.beat()
        return len(acker.sent)

    # WHEN SQS does not answer the first extension and the heartbeat ticks again while there is time
    assert [beat_at(now) for now in (100.5, 100.55, 100.6)] == [1, 1, 1]
    # THEN once it is answered, a later tick extends again
    lease.extending -= 1
    acker.sent[0][2]()
    assert beat_at(101.1) == 2
    # and an extension left unanswered (a hung connection) is sent again once the end is near: the
    # visibility ends at 101.5; a third of a timeout before that, 101.17, it is overdue
    assert beat_at(101.15) == 2
    assert beat_at(101.2) == 3


# --- 5. a plain function that outlives the grace ------------------------------------------------


async def test_a_thread_handler_outliving_the_grace_is_not_released_and_does_not_block(fake: FakeSqs) -> None:
    fake.put(QUEUE, "x")
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def handler(message: Message) -> None:
        started.set()
        release.wait(10)
        finished.set()

    with ThreadPoolExecutor(2) as pool:
        engine = Engine(
            as_client(fake), config_for(fake, shutdown_grace=0.2, visibility_timeout=5), adapt(handler, pool)
        )
        task = asyncio.create_task(engine.run())
        await until(started.is_set)
        engine.stop()
        await asyncio.wait_for(task, 3)
        # THEN the engine stopped while the thread still runs, and its message was not made visible
        assert not finished.is_set()
        [message] = fake.queues[QUEUE].messages.values()
        assert message.visible_at > asyncio.get_running_loop().time() + 3
        assert sample(engine, "conveyor_processor_released_total") == 0
        release.set()


# --- 6. a failed delete is retried --------------------------------------------------------------


async def test_a_failed_delete_is_retried_not_handled_again(fake: FakeSqs) -> None:
    fake.put(QUEUE, "x")
    for _ in range(2):
        fake.fail_calls["DeleteMessageBatch"].append(client_error("ServiceUnavailable", "DeleteMessageBatch", 503))
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1

    async with running(fake, handler, visibility_timeout=3):
        await until(lambda: left(fake) == 0)
    assert calls == 1
    assert fake.count("DeleteMessageBatch") == 3


async def test_a_failed_delete_after_the_dead_letter_copy_leaves_one_copy(fake: FakeSqs) -> None:
    fake.put(QUEUE, "x")
    fake.fail_calls["DeleteMessageBatch"].append(client_error("ServiceUnavailable", "DeleteMessageBatch", 503))

    async def handler(message: Message) -> None:
        raise Reject("no")

    async with running(fake, handler, visibility_timeout=3):
        await until(lambda: left(fake) == 0)
    assert left(fake, DLQ) == 1


# --- 7. a handler raising CancelledError ----------------------------------------------------------


async def test_a_handler_raising_cancelled_error_is_a_failure_not_a_dead_worker(fake: FakeSqs) -> None:
    for body in ("cancel-me", "after"):
        fake.put(QUEUE, body)
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(message.body)
        if message.body == "cancel-me" and message.receive_count == 1:
            raise asyncio.CancelledError  # e.g. awaiting a task someone else cancelled

    async with running(fake, handler, concurrency=1, retry_base_seconds=0, retry_max_seconds=0) as engine:
        await until(lambda: left(fake) == 0)
    assert sorted(calls) == ["after", "cancel-me", "cancel-me"]
    assert sample(engine, "conveyor_processor_retried_total") == 1
    assert sample(engine, "conveyor_processor_running") == 0


async def test_a_batch_handler_raising_cancelled_error_fails_its_batch(fake: FakeSqs) -> None:
    fake.put(QUEUE, "x")
    calls = 0

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError
        return None

    with ThreadPoolExecutor(1) as pool:
        async with running(fake, adapt(handle, pool), concurrency=1, retry_base_seconds=0, retry_max_seconds=0):
            await until(lambda: left(fake) == 0)
    assert calls == 2


# --- 8. Retry(after=...) that is not a number -----------------------------------------------------


@pytest.mark.parametrize("after", [math.nan, math.inf, -1, "soon", None, True])
def test_retry_refuses_an_after_that_is_not_a_finite_number(after: object) -> None:
    with pytest.raises(ValueError, match="Retry"):
        Retry(after=after)  # type: ignore[arg-type]  # the wrong type is the point


async def test_an_error_inside_the_decision_is_a_retry_not_a_crash(fake: FakeSqs) -> None:
    for body in ("nan", "fine"):
        fake.put(QUEUE, body)
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(message.body)
        if message.body == "nan" and message.receive_count == 1:
            retry = Retry(after=1)
            retry.after = math.nan  # set after the check: the decision must still hold
            raise retry
        if message.body == "nan" and message.receive_count == 2:
            raise Retry(after=math.nan)  # raising inside the handler: a ValueError, retried

    async with running(fake, handler, concurrency=1, retry_base_seconds=0, retry_max_seconds=0):
        await until(lambda: left(fake) == 0)
    assert calls.count("nan") == 3
    assert calls.count("fine") == 1


# --- 9. numbers SQS does not take -----------------------------------------------------------------


def test_the_retry_delay_does_not_overflow_after_many_receives() -> None:
    assert retry_delay(1_025, 1, 300, rand=lambda: 1.0) == 300
    assert retry_delay(10**9, 1, 300, rand=lambda: 1.0) == 300


async def test_a_retry_at_the_twelve_hour_cap_is_clamped_to_what_sqs_accepts(fake: FakeSqs) -> None:
    fake.put(QUEUE, "x")

    async def handler(message: Message) -> None:
        raise Retry(after=MAX_VISIBILITY_SECONDS)

    async with running(fake, handler) as engine:
        await until(lambda: fake.count("ChangeMessageVisibilityBatch") == 1)
        await until(lambda: len(engine.inflight) == 0)
        assert sample(engine, "conveyor_processor_lease_lost_total", operation="change_visibility") == 0
    [(_, kwargs)] = [c for c in fake.calls if c[0] == "ChangeMessageVisibilityBatch"]
    seconds = kwargs["Entries"][0]["VisibilityTimeout"]
    assert MAX_VISIBILITY_SECONDS - 60 <= seconds < MAX_VISIBILITY_SECONDS
    [message] = fake.queues[QUEUE].messages.values()
    assert message.visible_at > asyncio.get_running_loop().time() + 3600  # not visible again soon


def test_the_default_grace_fits_a_thirty_second_stop_timeout() -> None:
    from conveyor.settings import ProcessorSettings  # noqa: PLC0415 - read the default as users get it

    settings = ProcessorSettings()
    assert settings.shutdown_grace_seconds + 6 < 30  # 1 s poll drain, final flush of deletes
