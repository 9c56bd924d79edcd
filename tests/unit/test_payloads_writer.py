"""The writer with a payload bucket: a message over the threshold is stored in S3 and its pointer is
sent; what the client hears, what is on the queue and what is in the bucket, on every path."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from botocore.exceptions import ReadTimeoutError

from conveyor.payloads.pointer import POINTER_CLASS, SIZE_ATTRIBUTE
from conveyor.settings import WriterSettings
from conveyor.testing.s3 import InMemoryS3
from conveyor.testing.sqs import InMemorySqs, as_client, client_error
from conveyor.writer.app import create_app
from tests.unit.conftest import QUEUE, running_writer

BUCKET = "payloads"
LIMIT = 4096  # the queue's MaximumMessageSize in these tests: a few KiB make a large message
PROBLEM = "application/problem+json"


@pytest.fixture
def s3() -> InMemoryS3:
    return InMemoryS3(BUCKET)


@pytest.fixture
def limited(fake: InMemorySqs) -> InMemorySqs:
    fake.queues[QUEUE].attributes["MaximumMessageSize"] = str(LIMIT)
    return fake


@asynccontextmanager
async def writer(fake: InMemorySqs, s3: InMemoryS3, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    config = WriterSettings(queue_name=QUEUE, batch_linger_ms=5, payload_bucket=BUCKET, **settings)
    app = create_app(config, client=as_client(fake), s3=s3)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            yield client


def on_queue(fake: InMemorySqs) -> list[Any]:
    return list(fake.queues[QUEUE].messages.values())


def big(chars: int = 10_000) -> dict[str, str]:
    return {"text": "é" * chars}  # two bytes each in UTF-8: the size counted is the bytes


@pytest.mark.parametrize("fast_path", [True, False])
async def test_a_message_over_the_limit_is_stored_in_s3_and_its_pointer_sent(
    limited: InMemorySqs, s3: InMemoryS3, fast_path: bool
) -> None:
    async with writer(limited, s3, writer_fast_path=fast_path) as api:
        response = await api.post("/messages", json={"body": big(), "attributes": {"tenant": "acme"}})
    assert response.status_code == 202, response.text
    [message] = on_queue(limited)
    cls, where = json.loads(message.body)
    assert cls == POINTER_CLASS
    assert where["s3BucketName"] == BUCKET
    stored = s3.objects[BUCKET][where["s3Key"]]
    assert stored.decode() == json.dumps(big(), separators=(",", ":"), ensure_ascii=False)
    assert message.attributes[SIZE_ATTRIBUTE] == {"DataType": "Number", "StringValue": str(len(stored))}
    assert message.attributes["tenant"]["StringValue"] == "acme"  # the user's attributes travel on SQS


async def test_a_message_within_the_limit_is_not_offloaded(limited: InMemorySqs, s3: InMemoryS3) -> None:
    async with writer(limited, s3) as api:
        response = await api.post("/messages", json={"body": {"n": 1}})
    assert response.status_code == 202
    [message] = on_queue(limited)
    assert message.body == '{"n":1}'
    assert SIZE_ATTRIBUTE not in message.attributes
    assert s3.calls == []


async def test_the_offload_threshold_may_be_set_below_the_queues_limit(fake: InMemorySqs, s3: InMemoryS3) -> None:
    async with writer(fake, s3, payload_offload_bytes=2048, payload_prefix="in/") as api:
        small = await api.post("/messages", json={"body": {"text": "x" * 1500}})
        large = await api.post("/messages", json={"body": {"text": "x" * 2500}})
    assert (small.status_code, large.status_code) == (202, 202)
    [key] = s3.keys(BUCKET)
    assert key.startswith("in/")
    assert json.loads(s3.objects[BUCKET][key]) == {"text": "x" * 2500}


async def test_without_a_bucket_a_message_over_the_limit_is_refused(limited: InMemorySqs) -> None:
    async with running_writer(limited, WriterSettings(queue_name=QUEUE)) as api:
        response = await api.post("/messages", json={"body": big()})
    assert response.status_code == 413
    assert on_queue(limited) == []


async def test_an_s3_failure_is_a_503_and_nothing_is_sent(limited: InMemorySqs, s3: InMemoryS3) -> None:
    s3.fail_calls["PutObject"].append(client_error("ServiceUnavailable", "PutObject", 503))
    async with writer(limited, s3) as api:
        response = await api.post("/messages", json={"body": big()})
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["Retry-After"] == "2"
        assert response.json()["code"] == "ServiceUnavailable"
        assert on_queue(limited) == []
        again = await api.post("/messages", json={"body": big()})  # S3 healed: the retry goes through
    assert again.status_code == 202
    assert len(on_queue(limited)) == len(s3.keys(BUCKET)) == 1


async def test_a_missing_bucket_is_a_503_and_nothing_is_sent(limited: InMemorySqs) -> None:
    async with writer(limited, InMemoryS3("another")) as api:
        response = await api.post("/messages", json={"body": big()})
    assert response.status_code == 503
    assert response.json()["code"] == "NoSuchBucket"
    assert on_queue(limited) == []


async def test_an_object_whose_pointer_sqs_refused_is_removed(limited: InMemorySqs, s3: InMemoryS3) -> None:
    limited.fail_entries["SendMessageBatch"] = lambda entry: {
        "Code": "InvalidMessageContents", "SenderFault": True, "Message": "no"
    }  # fmt: skip
    async with writer(limited, s3) as api:
        response = await api.post("/messages", json={"body": big()})
    assert response.status_code == 422
    assert on_queue(limited) == []
    assert s3.keys(BUCKET) == []  # stored, then removed
    assert s3.count("PutObject") == s3.count("DeleteObject") == 1


async def test_an_object_is_kept_when_sqs_may_have_its_pointer(limited: InMemorySqs, s3: InMemoryS3) -> None:
    # A timeout: SQS may have taken the pointer, and removing its object would lose the message.
    for _ in range(3):
        limited.fail_calls["SendMessageBatch"].append(ReadTimeoutError(endpoint_url="http://sqs"))
    async with writer(limited, s3, send_retries=0) as api:
        response = await api.post("/messages", json={"body": big()})
    assert response.status_code == 503
    assert len(s3.keys(BUCKET)) == 1
    assert s3.count("DeleteObject") == 0


async def test_the_pointer_takes_an_attribute_slot(limited: InMemorySqs, s3: InMemoryS3) -> None:
    # The request's id and content type take two of SQS's ten slots: eight are left, seven with a pointer.
    eight = {f"a{i}": "v" for i in range(8)}
    seven = {f"a{i}": "v" for i in range(7)}
    async with writer(limited, s3) as api:
        refused = await api.post("/messages", json={"body": big(), "attributes": eight})
        accepted = await api.post("/messages", json={"body": big(), "attributes": seven})
        small = await api.post("/messages", json={"body": {"n": 1}, "attributes": eight})  # no pointer: they fit
    assert refused.status_code == 422
    assert refused.json()["field"] == "attributes"
    assert refused.json()["detail"] == (
        "attributes: at most 7 attributes on a message stored in S3 (its pointer takes one of SQS's 10)"
    )
    assert (accepted.status_code, small.status_code) == (202, 202)
    assert len(s3.keys(BUCKET)) == 1


@pytest.mark.parametrize("name", ["ExtendedPayloadSize", "SQSLargePayloadSize", "extendedpayloadsize"])
async def test_the_pointers_attribute_names_are_reserved(fake: InMemorySqs, s3: InMemoryS3, name: str) -> None:
    # a consumer would take such a message for a pointer
    async with writer(fake, s3) as api:
        response = await api.post("/messages", json={"body": {"n": 1}, "attributes": {name: 5}})
    assert response.status_code == 422
    assert "reserved" in response.json()["detail"]
    assert on_queue(fake) == []


async def test_a_batch_offloads_its_large_entries_only(limited: InMemorySqs, s3: InMemoryS3) -> None:
    s3.fail_calls["PutObject"].append(client_error("SlowDown", "PutObject", 503))
    entries = [{"id": "small", "body": {"n": 1}}, {"id": "big", "body": big()}, {"id": "big2", "body": big(9000)}]
    async with writer(limited, s3) as api:
        response = await api.post("/messages/batch", json={"messages": entries})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {r["id"] for r in answer["successful"]} == {"small", "big2"}
    [failed] = answer["failed"]
    assert (failed["id"], failed["status"], failed["code"], failed["retryable"]) == ("big", 503, "SlowDown", True)
    bodies = sorted(m.body for m in on_queue(limited))
    assert len(bodies) == 2
    assert bodies[0].startswith(f'["{POINTER_CLASS}"')
    assert bodies[1] == '{"n":1}'
    assert len(s3.keys(BUCKET)) == 1


async def test_offloaded_messages_are_counted(limited: InMemorySqs, s3: InMemoryS3) -> None:
    async with writer(limited, s3) as api:
        await api.post("/messages", json={"body": big()})
        await api.post("/messages", json={"body": {"n": 1}})
        metrics = (await api.get("/metrics")).text
    size = len(next(iter(s3.objects[BUCKET].values())))
    assert 'conveyor_payloads_total{event="stored"} 1.0' in metrics
    assert f'conveyor_payload_bytes_total{{direction="stored"}} {float(size)}' in metrics


async def test_on_a_content_deduplicated_fifo_queue_the_payload_not_the_pointer_is_deduplicated(
    s3: InMemoryS3,
) -> None:
    fake = InMemorySqs()
    fake.create("orders.fifo", ContentBasedDeduplication="true", MaximumMessageSize=str(LIMIT))
    config = WriterSettings(queue_name="orders.fifo", payload_bucket=BUCKET)
    app = create_app(config, client=as_client(fake), s3=s3)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as api:
            for _ in range(2):  # the same payload twice, without a client name or a key
                response = await api.post("/messages", json={"body": big(), "group_id": "g"})
                assert response.status_code == 202, response.text
    sent = [entry for name, kwargs in fake.calls if name == "SendMessageBatch" for entry in kwargs["Entries"]]
    ids = {entry["MessageDeduplicationId"] for entry in sent}
    assert len(sent) == 2
    assert ids == {hashlib.sha256(json.dumps(big(), separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()}
    # (SQS drops the second as a duplicate; its object is left to the bucket's lifecycle rule)
