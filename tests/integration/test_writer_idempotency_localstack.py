"""Idempotency-Key replay against a real LocalStack and a real redis-server: what the API answers and
what lands on the queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from botocore.exceptions import EndpointConnectionError

from conveyor import metadata
from conveyor.settings import WriterSettings
from conveyor.sqs.client import sqs_client
from conveyor.writer.app import create_app
from tests.localstack_fixtures import Queues, drain
from tests.redis_fixtures import redis_server, redis_url

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["redis_server", "redis_url"]


@asynccontextmanager
async def writer(queues: Queues, store: str, *, fail_first_sends: int = 0) -> AsyncIterator[httpx.AsyncClient]:
    """The writer on the real queue and store. ``fail_first_sends``: that many SendMessageBatch calls
    fail as if SQS could not be reached (a fault injected in front of the real client)."""
    settings = WriterSettings(sqs_endpoint_url=queues.endpoint, queue_name=queues.name, idempotency_store=store)
    async with sqs_client(settings) as client:
        real = client.send_message_batch
        failures = [EndpointConnectionError(endpoint_url=queues.endpoint) for _ in range(fail_first_sends)]

        async def send_message_batch(**kwargs: Any) -> Any:
            if failures:
                raise failures.pop()
            return await real(**kwargs)

        client.send_message_batch = send_message_batch  # type: ignore[method-assign]
        app = create_app(settings, client=client)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://writer") as api:
                yield api


def everything_on(sqs: SQSClient, queues: Queues, expected: int) -> list[dict[str, Any]]:
    """What is on the queue: ``expected`` messages, and then nothing more for a second."""
    got = drain(sqs, queues.url, expected)
    return got + drain(sqs, queues.url, 1, timeout=1.0)


async def test_a_repeat_is_replayed_and_the_queue_holds_one_message(
    queues: Queues, sqs: SQSClient, redis_url: str
) -> None:
    async with writer(queues, redis_url) as api:
        first = await api.post("/messages", json={"body": {"order": 1}}, headers={"Idempotency-Key": "k-1"})
        again = await api.post("/messages", json={"body": {"order": 1}}, headers={"Idempotency-Key": "k-1"})
        reused = await api.post("/messages", json={"body": {"order": 2}}, headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code, reused.status_code) == (202, 202, 422)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert reused.json()["type"] == "urn:conveyor:problem:idempotency-key-reused"
    [message] = everything_on(sqs, queues, 1)
    assert message["MessageId"] == first.json()["message_id"]
    assert message["MessageAttributes"][metadata.IDEMPOTENCY_KEY]["StringValue"] == "/k-1"  # anonymous scope


async def test_ten_concurrent_posts_with_one_key_put_one_message_on_the_queue(
    queues: Queues, sqs: SQSClient, redis_url: str
) -> None:
    async with writer(queues, redis_url) as api:
        responses = await asyncio.gather(
            *(api.post("/messages", json={"body": "once"}, headers={"Idempotency-Key": "k"}) for _ in range(10))
        )
    assert {r.status_code for r in responses} <= {202, 409}
    sent = [r for r in responses if r.status_code == 202 and "idempotent-replayed" not in r.headers]
    assert len(sent) == 1
    assert all(r.json() == sent[0].json() for r in responses if r.status_code == 202)
    [message] = everything_on(sqs, queues, 1)
    assert message["MessageId"] == sent[0].json()["message_id"]


async def test_after_a_503_a_retry_with_the_key_sends_once(queues: Queues, sqs: SQSClient, redis_url: str) -> None:
    async with writer(queues, redis_url, fail_first_sends=1) as api:
        failed = await api.post("/messages", json={"body": 1}, headers={"Idempotency-Key": "k"})
        retried = await api.post("/messages", json={"body": 1}, headers={"Idempotency-Key": "k"})
        replayed = await api.post("/messages", json={"body": 1}, headers={"Idempotency-Key": "k"})
    assert (failed.status_code, retried.status_code, replayed.status_code) == (503, 202, 202)
    assert replayed.headers["idempotent-replayed"] == "true"
    [message] = everything_on(sqs, queues, 1)
    assert message["MessageId"] == retried.json()["message_id"]


async def test_two_clients_with_one_key_put_two_messages(queues: Queues, sqs: SQSClient, redis_url: str) -> None:
    async with writer(queues, redis_url) as api:
        for client in ("acme", "globex", "acme"):
            response = await api.post(
                "/messages", json={"body": 1}, headers={"Idempotency-Key": "k", "X-Conveyor-Client": client}
            )
            assert response.status_code == 202
    keys = sorted(
        m["MessageAttributes"][metadata.IDEMPOTENCY_KEY]["StringValue"] for m in everything_on(sqs, queues, 2)
    )
    assert keys == ["acme/k", "globex/k"]


async def test_batch_entries_with_keys_are_sent_once(queues: Queues, sqs: SQSClient, redis_url: str) -> None:
    entries = [{"id": f"e{i}", "body": i, "idempotency_key": f"key-{i}"} for i in range(12)]
    async with writer(queues, redis_url) as api:
        first = await api.post("/messages/batch", json={"messages": entries})
        again = await api.post("/messages/batch", json={"messages": entries})
    assert first.json()["failed"] == again.json()["failed"] == []
    assert all(s["replayed"] for s in again.json()["successful"])
    ids = {s["id"]: s["message_id"] for s in first.json()["successful"]}
    assert {s["id"]: s["message_id"] for s in again.json()["successful"]} == ids
    on_queue = everything_on(sqs, queues, 12)
    assert sorted(json.loads(m["Body"]) for m in on_queue) == list(range(12))
    assert {m["MessageId"] for m in on_queue} == set(ids.values())
