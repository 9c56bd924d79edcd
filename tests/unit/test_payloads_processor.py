"""The processor and messages whose payload is in S3: what the handler sees, what happens to the
message and to its object, on every path (fetched, missing, S3 failing, handler failing, deletes)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from conveyor import Message, Reject, batch_handler, metadata
from conveyor.idempotency import open_store
from conveyor.message import BatchFailures
from conveyor.payloads import store as store_module
from conveyor.payloads.pointer import LEGACY_POINTER_CLASS, LEGACY_SIZE_ATTRIBUTE, POINTER_CLASS, SIZE_ATTRIBUTE
from conveyor.payloads.store import PayloadStore
from conveyor.processor.engine import Engine
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.engine.outcome import RetryPolicy
from conveyor.processor.routing import router
from conveyor.processor.user_code import adapt
from conveyor.testing.s3 import InMemoryS3
from conveyor.testing.sqs import InMemorySqs, as_client, client_error
from tests import typed_app
from tests.unit.engine_support import DLQ, QUEUE, config_for, left, sample, started, until

BUCKET = "payloads"
FIFO = "work.fifo"
PAYLOAD = json.dumps({"order": 7, "lines": ["x" * 100] * 50})


def setup() -> tuple[InMemorySqs, InMemoryS3]:
    fake = InMemorySqs()
    fake.create(QUEUE, max_receive_count=3)
    return fake, InMemoryS3(BUCKET)


async def send_pointer(
    fake: InMemorySqs,
    s3: InMemoryS3,
    key: str = "k1",
    *,
    legacy: bool = False,
    store: bool = True,
    attrs: dict[str, str] | None = None,
) -> None:
    """A message as an extended client sends it: the payload in S3, the pointer on the queue."""
    if store:
        s3.objects[BUCKET][key] = PAYLOAD.encode()
    cls, size_name = (LEGACY_POINTER_CLASS, LEGACY_SIZE_ATTRIBUTE) if legacy else (POINTER_CLASS, SIZE_ATTRIBUTE)
    attributes: dict[str, Any] = {size_name: {"DataType": "Number", "StringValue": str(len(PAYLOAD))}}
    attributes |= {name: {"DataType": "String", "StringValue": value} for name, value in (attrs or {}).items()}
    body = json.dumps([cls, {"s3BucketName": BUCKET, "s3Key": key}])
    await fake.send_message(QueueUrl=fake.queues[QUEUE].url, MessageBody=body, MessageAttributes=attributes)


@asynccontextmanager
async def engine_on(fake: InMemorySqs, s3: InMemoryS3, handler: Any, **overrides: Any) -> AsyncIterator[Engine]:
    engine = Engine(as_client(fake), config_for(fake, **overrides), handler, payloads=PayloadStore(s3))  # type: ignore[arg-type]
    async with started(engine):
        yield engine


def dead_lettered(fake: InMemorySqs) -> list[Any]:
    return list(fake.queues[DLQ].messages.values())


async def test_the_handler_gets_the_payload_and_the_object_goes_after_the_message() -> None:
    fake, s3 = setup()
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)

    await send_pointer(fake, s3, attrs={"tenant": "acme"})
    async with engine_on(fake, s3, handler) as engine:
        await until(lambda: left(fake) == 0 and s3.keys(BUCKET) == [])
    [message] = seen
    assert message.body == PAYLOAD
    assert message.json()["order"] == 7
    assert message.offloaded
    assert message.payload_location == f"s3://{BUCKET}/k1"
    assert message.attributes == {"tenant": "acme"}  # the pointer's size attribute is not the user's
    assert s3.count("DeleteObjects") == 1
    assert sample(engine, "conveyor_payloads_total", event="fetched") == 1
    assert sample(engine, "conveyor_payloads_total", event="deleted") == 1
    assert sample(engine, "conveyor_payload_bytes_total", direction="fetched") == len(PAYLOAD)


async def test_the_java_clients_legacy_pointer_is_read() -> None:
    fake, s3 = setup()
    bodies: list[str] = []

    async def handler(message: Message) -> None:
        bodies.append(message.body)

    await send_pointer(fake, s3, legacy=True)
    async with engine_on(fake, s3, handler):
        await until(lambda: left(fake) == 0 and s3.keys(BUCKET) == [])
    assert bodies == [PAYLOAD]


async def test_a_message_without_a_pointer_is_not_fetched() -> None:
    fake, s3 = setup()
    bodies: list[str] = []

    async def handler(message: Message) -> None:
        bodies.append(message.body)

    looks_like_one = json.dumps([POINTER_CLASS, {"s3BucketName": BUCKET, "s3Key": "k"}])  # but not marked
    await fake.send_message(QueueUrl=fake.queues[QUEUE].url, MessageBody=looks_like_one)
    async with engine_on(fake, s3, handler):
        await until(lambda: left(fake) == 0)
    assert bodies == [looks_like_one]
    assert s3.calls == []


async def test_a_missing_object_is_dead_lettered_at_once_without_running_the_handler() -> None:
    fake, s3 = setup()
    calls: list[Message] = []

    async def handler(message: Message) -> None:
        calls.append(message)

    await send_pointer(fake, s3, store=False)
    async with engine_on(fake, s3, handler) as engine:
        await until(lambda: len(dead_lettered(fake)) == 1 and left(fake) == 0)
    assert calls == []
    [copy] = dead_lettered(fake)
    record = json.loads(copy.attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"] == "conveyor.payloads.errors.PayloadMissingError"
    assert f"s3://{BUCKET}/k1 does not exist (NoSuchKey)" in record["error_message"]
    assert record["receive_count"] == 1  # at once, not after the retries
    assert json.loads(copy.body)[1] == {"s3BucketName": BUCKET, "s3Key": "k1"}  # the copy keeps the pointer
    assert copy.attributes[SIZE_ATTRIBUTE]["StringValue"] == str(len(PAYLOAD))
    assert sample(engine, "conveyor_payloads_total", event="missing") == 1


async def test_a_marked_message_whose_body_is_no_pointer_is_dead_lettered() -> None:
    fake, s3 = setup()
    attributes = {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "10"}}
    await fake.send_message(QueueUrl=fake.queues[QUEUE].url, MessageBody='{"n": 1}', MessageAttributes=attributes)

    async def handler(message: Message) -> None:
        raise AssertionError("never called")

    async with engine_on(fake, s3, handler):
        await until(lambda: len(dead_lettered(fake)) == 1)
    record = json.loads(dead_lettered(fake)[0].attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"] == "conveyor.payloads.errors.PayloadUnreadableError"
    assert "ExtendedPayloadSize but its body is not an S3 pointer" in record["error_message"]


async def test_an_object_that_is_not_text_is_dead_lettered() -> None:
    fake, s3 = setup()
    await send_pointer(fake, s3)
    s3.objects[BUCKET]["k1"] = b"\xff\xfe\x00"

    async def handler(message: Message) -> None:
        raise AssertionError("never called")

    async with engine_on(fake, s3, handler):
        await until(lambda: len(dead_lettered(fake)) == 1)
    record = json.loads(dead_lettered(fake)[0].attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"] == "conveyor.payloads.errors.PayloadUnreadableError"


async def test_s3_failing_retries_the_message_and_the_next_delivery_gets_the_payload() -> None:
    fake, s3 = setup()
    s3.fail_calls["GetObject"].append(client_error("ServiceUnavailable", "GetObject", 503))
    seen: list[tuple[int, str]] = []

    async def handler(message: Message) -> None:
        seen.append((message.receive_count, message.body))

    await send_pointer(fake, s3)
    async with engine_on(fake, s3, handler):
        await until(lambda: left(fake) == 0)
    assert seen == [(2, PAYLOAD)]  # the first delivery's fetch failed: retried, never dead-lettered
    assert dead_lettered(fake) == []
    assert s3.keys(BUCKET) == []


async def test_a_failed_handler_keeps_the_object_and_a_dead_letter_copy_keeps_the_pointer() -> None:
    fake, s3 = setup()

    async def handler(message: Message) -> None:
        assert message.body == PAYLOAD
        raise Reject("bad order")

    await send_pointer(fake, s3)
    async with engine_on(fake, s3, handler):
        await until(lambda: len(dead_lettered(fake)) == 1 and left(fake) == 0)
    assert s3.keys(BUCKET) == ["k1"]  # the copy in the DLQ still points at it
    assert s3.count("DeleteObjects") == 0
    [copy] = dead_lettered(fake)
    assert json.loads(copy.body)[0] == POINTER_CLASS


async def test_the_pointer_attribute_keeps_its_slot_when_the_copy_is_full() -> None:
    fake, s3 = setup()
    nine = {f"a{i}": "v" for i in range(9)}  # with the pointer's: ten, and the record needs one

    async def handler(message: Message) -> None:
        raise Reject("no")

    await send_pointer(fake, s3, attrs=nine)
    async with engine_on(fake, s3, handler):
        await until(lambda: len(dead_lettered(fake)) == 1)
    [copy] = dead_lettered(fake)
    assert SIZE_ATTRIBUTE in copy.attributes
    record = json.loads(copy.attributes[metadata.DEAD_LETTER]["StringValue"])
    assert len(record["overflow_attributes"]) == 1  # one of the user's went inside the record instead


async def test_with_deletes_off_the_object_stays() -> None:
    fake, s3 = setup()

    async def handler(message: Message) -> None:
        return None

    await send_pointer(fake, s3)
    async with engine_on(fake, s3, handler, payload_delete=False):
        await until(lambda: left(fake) == 0)
    assert s3.keys(BUCKET) == ["k1"]
    assert s3.count("DeleteObjects") == 0


async def test_an_object_stays_when_the_message_delete_fails() -> None:
    fake, s3 = setup()
    fake.fail_entries["DeleteMessageBatch"] = lambda entry: {
        "Code": "ReceiptHandleIsInvalid", "SenderFault": True, "Message": "gone"
    }  # fmt: skip
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(message.body)

    await send_pointer(fake, s3)
    async with engine_on(fake, s3, handler) as engine:
        await until(lambda: sample(engine, "conveyor_processor_lease_lost_total", operation="delete") >= 1)
    assert handled == [PAYLOAD]
    assert s3.keys(BUCKET) == ["k1"]  # the message may come back: its payload must still be there


async def test_a_failing_object_delete_is_counted_and_nothing_else_changes() -> None:
    fake, s3 = setup()
    s3.fail_calls["DeleteObjects"].append(client_error("AccessDenied", "DeleteObjects", 403))

    async def handler(message: Message) -> None:
        return None

    await send_pointer(fake, s3)
    async with engine_on(fake, s3, handler) as engine:
        await until(lambda: sample(engine, "conveyor_payloads_total", event="delete_failed") == 1)
    assert left(fake) == 0
    assert s3.keys(BUCKET) == ["k1"]  # left to the bucket's lifecycle rule


async def test_a_batch_handler_gets_each_payload_and_a_missing_one_is_its_own_failure() -> None:
    fake, s3 = setup()
    got: list[list[str]] = []

    @batch_handler
    async def handler(messages: list[Message]) -> BatchFailures:
        got.append(sorted(m.body for m in messages))
        return None

    await send_pointer(fake, s3, "k1")
    await send_pointer(fake, s3, "k2")
    await send_pointer(fake, s3, "gone", store=False)
    await fake.send_message(QueueUrl=fake.queues[QUEUE].url, MessageBody="plain")
    with ThreadPoolExecutor(1) as pool:
        async with engine_on(fake, s3, adapt(handler, pool)):
            await until(lambda: left(fake) == 0)
    assert sorted(body for bodies in got for body in bodies) == sorted([PAYLOAD, PAYLOAD, "plain"])
    assert len(dead_lettered(fake)) == 1
    assert s3.keys(BUCKET) == []


async def test_the_heartbeat_covers_a_slow_download() -> None:
    fake, s3 = setup()
    s3.call_delay["GetObject"] = 3.0  # longer than the 2 s visibility of these tests
    handled: list[int] = []

    async def handler(message: Message) -> None:
        handled.append(message.receive_count)

    await send_pointer(fake, s3)
    async with engine_on(fake, s3, handler):
        await until(lambda: left(fake) == 0, timeout=10)
    assert handled == [1]
    assert fake.received_total == 1  # never visible again during the download
    assert any(name == "ChangeMessageVisibilityBatch" for name, _ in fake.calls)


async def test_a_typed_handler_validates_the_fetched_payload_not_the_pointer() -> None:
    fake, s3 = setup()
    order = {"order_id": "o-9", "amount": "1.50", "lines": [{"sku": "a", "quantity": 1}]}
    for key, payload in (("good", order), ("bad", {"order_id": "o-10"})):
        s3.objects[BUCKET][key] = json.dumps(payload).encode()
        body = json.dumps([POINTER_CLASS, {"s3BucketName": BUCKET, "s3Key": key}])
        sqs_attributes: dict[str, Any] = {
            metadata.TYPE: {"DataType": "String", "StringValue": "order.created"},
            SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "1"},
        }
        await fake.send_message(QueueUrl=fake.queues[QUEUE].url, MessageBody=body, MessageAttributes=sqs_attributes)
    typed_app.CALLS.clear()
    policy = RetryPolicy(base_seconds=0, max_seconds=0, max_receive_count=3, dead_letter_queue=True)
    with ThreadPoolExecutor(2) as pool:
        async with engine_on(fake, s3, router(typed_app.app, pool, policy)):
            await until(lambda: left(fake) == 0 and len(dead_lettered(fake)) == 1)
    [(kind, model, _, _)] = typed_app.CALLS
    assert kind == "order.created"
    assert isinstance(model, typed_app.OrderCreated)
    assert model.order_id == "o-9"
    record = json.loads(dead_lettered(fake)[0].attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"] == "conveyor.InvalidMessageError"
    assert s3.keys(BUCKET) == ["bad"]  # the dead letter's object stays; the handled one's went
    typed_app.CALLS.clear()


async def test_a_message_skipped_as_a_duplicate_gives_back_its_object() -> None:
    # FIFO with an idempotency store: m2 succeeds but goes back behind m1's failure (to keep the order),
    # and comes back to be skipped as a duplicate: that skip is the only delete its message gets.
    fake, s3 = InMemorySqs(), InMemoryS3(BUCKET)
    fake.create(FIFO)
    for name in ("m1", "m2"):
        s3.objects[BUCKET][name] = json.dumps({"name": name}).encode()
        attributes = {
            metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": name},
            SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "20"},
        }
        fake.put(FIFO, json.dumps([POINTER_CLASS, {"s3BucketName": BUCKET, "s3Key": name}]), attributes, "g")
    handled: list[str] = []

    @batch_handler
    def handler(messages: list[Message]) -> BatchFailures:
        failures: dict[str, BaseException] = {}
        for message in messages:
            name = message.json()["name"]
            if name == "m1" and message.receive_count == 1:
                failures[message.message_id] = ConnectionError("blink")
            else:
                handled.append(name)
        return failures

    with tempfile.TemporaryDirectory() as folder:
        async with open_store(f"sqlite:///{folder}/keys.sqlite3") as store:
            config = config_for(fake, FIFO, visibility_timeout=1, retry_base_seconds=0, retry_max_seconds=0)
            dedupe = Dedupe(store, visibility_timeout=1, ttl_seconds=60, linger=0.01)
            with ThreadPoolExecutor(1) as pool:
                engine = Engine(
                    as_client(fake),
                    config,
                    adapt(handler, pool),
                    dedupe=dedupe,
                    payloads=PayloadStore(s3),  # type: ignore[arg-type]
                )
                async with started(engine):
                    await until(lambda: left(fake, FIFO) == 0 and s3.keys(BUCKET) == [], timeout=10)
    assert sorted(handled) == ["m1", "m2"]
    assert sample(engine, "conveyor_processor_duplicates_skipped_total") == 1


async def test_a_pointer_to_a_bucket_the_processor_does_not_read_is_dead_lettered_untouched() -> None:
    fake, s3 = setup()
    s3.objects["billing"] = {"ledger": b'{"secret": 1}'}
    body = json.dumps([POINTER_CLASS, {"s3BucketName": "billing", "s3Key": "ledger"}])
    attributes = {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "13"}}
    await fake.send_message(QueueUrl=fake.queues[QUEUE].url, MessageBody=body, MessageAttributes=attributes)
    await send_pointer(fake, s3, "mine")
    bodies: list[str] = []

    async def handler(message: Message) -> None:
        bodies.append(message.body)

    async with engine_on(fake, s3, handler, payload_buckets=frozenset({BUCKET}), payload_own=(BUCKET, "")):
        await until(lambda: left(fake) == 0 and len(dead_lettered(fake)) == 1)
    assert bodies == [PAYLOAD]  # its own bucket's payload, not the other's
    record = json.loads(dead_lettered(fake)[0].attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"] == "conveyor.payloads.errors.PayloadUnreadableError"
    assert "s3://billing/ledger: the bucket is not one this processor reads" in record["error_message"]
    assert s3.keys("billing") == ["ledger"]
    assert [kwargs["Bucket"] for name, kwargs in s3.calls] == [BUCKET, BUCKET]  # GetObject, DeleteObjects


async def test_only_the_processors_own_objects_are_deleted() -> None:
    fake, s3 = setup()
    s3.objects["other-producer"] = {}
    await send_pointer(fake, s3, "in/mine")
    await send_pointer(fake, s3, "elsewhere")  # its own bucket, outside its prefix

    async def handler(message: Message) -> None:
        return None

    async with engine_on(fake, s3, handler, payload_own=(BUCKET, "in/")) as engine:
        await until(lambda: left(fake) == 0 and s3.keys(BUCKET) == ["elsewhere"])
    assert sample(engine, "conveyor_payloads_total", event="deleted") == 1


async def test_an_error_while_reading_one_payload_holds_back_no_other_message() -> None:
    fake, s3 = setup()
    s3.fail_calls["GetObject"].append(aiohttp.ClientPayloadError("Response payload is not completed"))
    await send_pointer(fake, s3, "k1")
    await send_pointer(fake, s3, "k2")
    seen: list[tuple[str, int]] = []

    async def handler(message: Message) -> None:
        seen.append((message.payload_location or "", message.receive_count))

    async with engine_on(fake, s3, handler):
        await until(lambda: left(fake) == 0)
    assert sorted(count for _, count in seen) == [1, 2]  # one read at once, the cut one on its next delivery
    assert dead_lettered(fake) == []


async def test_a_negative_size_is_an_unknown_size_not_a_crash() -> None:
    fake, s3 = setup()
    s3.objects[BUCKET]["k1"] = PAYLOAD.encode()
    body = json.dumps([POINTER_CLASS, {"s3BucketName": BUCKET, "s3Key": "k1"}])
    attributes = {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "-1"}}
    await fake.send_message(QueueUrl=fake.queues[QUEUE].url, MessageBody=body, MessageAttributes=attributes)
    bodies: list[str] = []

    async def handler(message: Message) -> None:
        bodies.append(message.body)

    async with engine_on(fake, s3, handler) as engine:
        await until(lambda: left(fake) == 0)
    assert bodies == [PAYLOAD]
    assert sample(engine, "conveyor_payload_bytes_total", direction="fetched") == len(PAYLOAD)  # what was read


async def test_an_object_over_the_payload_limit_is_not_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_PAYLOAD_BYTES", 1000)
    fake, s3 = setup()
    await send_pointer(fake, s3)  # PAYLOAD is over 1000 bytes

    async def handler(message: Message) -> None:
        raise AssertionError("never called")

    async with engine_on(fake, s3, handler):
        await until(lambda: len(dead_lettered(fake)) == 1)
    record = json.loads(dead_lettered(fake)[0].attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"] == "conveyor.payloads.errors.PayloadUnreadableError"
    assert f"is {len(PAYLOAD)} bytes, over the 1000 a payload may have" in record["error_message"]


async def test_a_mirrored_copy_never_deletes_the_live_messages_object() -> None:
    fake, s3 = setup()
    await send_pointer(fake, s3, attrs={metadata.MIRRORED: "live-message-id"})
    bodies: list[str] = []

    async def handler(message: Message) -> None:
        bodies.append(message.body)

    async with engine_on(fake, s3, handler):
        await until(lambda: left(fake) == 0)
    assert bodies == [PAYLOAD]
    assert s3.keys(BUCKET) == ["k1"]  # the live processor deletes it once the live message is handled
