"""The writer against a real LocalStack: what the API answers and what lands on the queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from conveyor import metadata
from conveyor.localstack import LocalStack
from conveyor.settings import WriterSettings
from conveyor.writer.app import create_app
from tests.localstack_fixtures import LOCALSTACK_PYTHON, Queues, count, drain, make_queues

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

PROBLEM = "application/problem+json"


@asynccontextmanager
async def writer(queues: Queues, endpoint: str | None = None, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    config = WriterSettings(
        sqs_endpoint_url=endpoint or queues.endpoint,
        queue_name=queues.name,
        **settings,  # type: ignore[arg-type]
    )
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            yield client


async def test_posted_message_is_read_back_exactly(queues: Queues, sqs: SQSClient) -> None:
    async with writer(queues) as api:
        response = await api.post(
            "/messages",
            json={
                "body": {"order": 1, "items": ["a", "b"], "name": "Zoë"},
                "attributes": {"tenant": "acme", "n": 2.5},
            },
            headers={"X-Request-ID": "it-req-1", "Idempotency-Key": "key-1"},
        )
    assert response.status_code == 202, response.text
    [message] = drain(sqs, queues.url, 1)
    assert message["MessageId"] == response.json()["message_id"]
    assert message["Body"] == '{"order":1,"items":["a","b"],"name":"Zoë"}'
    attributes = message["MessageAttributes"]
    assert attributes["tenant"] == {"DataType": "String", "StringValue": "acme"}
    assert attributes["n"] == {"DataType": "Number", "StringValue": "2.5"}
    assert attributes[metadata.REQUEST_ID]["StringValue"] == "it-req-1"
    assert attributes[metadata.IDEMPOTENCY_KEY]["StringValue"] == "/key-1"  # the anonymous scope


async def test_batch_with_bad_entries(queues: Queues, sqs: SQSClient) -> None:
    entries: list[dict[str, object]] = [{"id": f"m{i}", "body": {"i": i}} for i in range(15)]
    entries.append({"id": "nul", "body": 1, "attributes": {"x": "a\u0000b"}})  # AWS refuses NUL
    async with writer(queues) as api:
        response = await api.post("/messages/batch", json={"messages": entries})
    assert response.status_code == 200
    result = response.json()
    assert len(result["successful"]) == 15
    assert [(f["id"], f["status"]) for f in result["failed"]] == [("nul", 422)]
    bodies = sorted(json.loads(m["Body"])["i"] for m in drain(sqs, queues.url, 15))
    assert bodies == list(range(15))


async def test_error_statuses(localstack: LocalStack, sqs: SQSClient) -> None:
    queues = make_queues(localstack.endpoint, MaximumMessageSize="1024")
    async with writer(queues) as api:
        malformed = await api.post("/messages", content=b"{", headers={"Content-Type": "application/json"})
        wrong_type = await api.post("/messages", content=b"{}", headers={"Content-Type": "text/csv"})
        too_big = await api.post("/messages", json={"body": "x" * 1024})
        bad_chars = await api.post("/messages", json={"body": "\ufffe"})
        fifo_only = await api.post("/messages", json={"body": 1, "deduplication_id": "d1"})
    assert [r.status_code for r in (malformed, wrong_type, too_big, bad_chars, fifo_only)] == [
        400,
        415,
        413,
        422,
        422,
    ]
    assert all(r.headers["content-type"] == PROBLEM for r in (malformed, wrong_type, too_big, bad_chars, fifo_only))
    assert count(sqs, queues.url) == (0, 0)


async def test_deleted_queue_is_500_with_the_sqs_code(localstack: LocalStack, sqs: SQSClient) -> None:
    queues = make_queues(localstack.endpoint)
    async with writer(queues) as api:
        sqs.delete_queue(QueueUrl=queues.url)
        response = await api.post("/messages", json={"body": 1})
    assert response.status_code == 500
    assert response.json()["code"] in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


async def test_sqs_stopped_is_503_never_202(tmp_path: Path) -> None:
    # GIVEN a writer on a LocalStack of its own, which is then stopped
    own = LocalStack.start(LOCALSTACK_PYTHON, tmp_path / "own")
    try:
        queues = make_queues(own.endpoint)
        async with writer(queues, sqs_max_attempts=1, sqs_connect_timeout_seconds=0.5) as api:
            assert (await api.post("/messages", json={"body": "before"})).status_code == 202
            own.stop()
            responses = [await api.post("/messages", json={"body": i}) for i in range(3)]
            ready = await api.get("/readyz")
    finally:
        own.stop()
    # THEN every post is 503 with Retry-After, and readiness says so
    assert [r.status_code for r in responses] == [503, 503, 503], responses[0].text
    assert all(r.headers["retry-after"] == "2" for r in responses)
    assert all(r.json()["retryable"] is True for r in responses)
    assert ready.status_code == 503


async def test_a_message_sqs_refuses_in_a_shared_call_is_422_alone(localstack: LocalStack, sqs: SQSClient) -> None:
    # GIVEN the queue's limit is lowered after the writer read it: the writer lets a 4 KiB message
    # through, and SQS refuses that entry (LocalStack says InvalidParameterValueException)
    queues = make_queues(localstack.endpoint)
    async with writer(queues, batch_linger_ms=200) as api:
        sqs.set_queue_attributes(QueueUrl=queues.url, Attributes={"MaximumMessageSize": "1024"})
        # WHEN it is posted together with small ones
        bodies = ["a", "x" * 4096, "b", "c"]
        responses = await asyncio.gather(*(api.post("/messages", json={"body": b}) for b in bodies))
    # THEN only the big one is refused, as the sender's fault, without SQS's text
    assert [r.status_code for r in responses] == [202, 422, 202, 202], [r.text for r in responses]
    assert responses[1].json()["code"]
    received = sorted(json.loads(m["Body"]) for m in drain(sqs, queues.url, 3))
    assert received == ["a", "b", "c"]
