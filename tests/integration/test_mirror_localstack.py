"""The writer's mirror on LocalStack: 400 posts at a ratio of 0.5, the live queue's and the mirror's
contents, the copies' mark, and the mirror queue deleted while clients keep posting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI

from conveyor import metadata
from conveyor.settings import WriterSettings
from conveyor.writer.app import create_app
from conveyor.writer.mirror import chosen
from tests.localstack_fixtures import Queues, count, drain, make_queues
from tests.polling import until

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@asynccontextmanager
async def writer(queues: Queues, mirror_url: str, ratio: float) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    config = WriterSettings(
        sqs_endpoint_url=queues.endpoint, queue_name=queues.name, mirror_queue_url=mirror_url, mirror_ratio=ratio
    )
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            yield client, app


def mirror_count(app: FastAPI, outcome: str) -> float:
    registry = app.state.writer.metrics.registry
    return float(registry.get_sample_value("conveyor_writer_mirror_total", {"outcome": outcome}) or 0)


async def post_all(api: httpx.AsyncClient, start: int, n: int) -> list[httpx.Response]:
    async def one(i: int) -> httpx.Response:
        return await api.post("/messages", json={"body": {"n": i}, "attributes": {"tenant": "t"}})

    results: list[httpx.Response] = []
    for chunk in range(start, start + n, 20):  # twenty clients at a time
        results += await asyncio.gather(*(one(i) for i in range(chunk, min(chunk + 20, start + n))))
    return results


async def test_400_posts_at_half_are_copied_as_chosen(queues: Queues, sqs: SQSClient) -> None:
    mirror = make_queues(queues.endpoint, max_receive_count=1)
    async with writer(queues, mirror.url, 0.5) as (api, app):
        answers = await post_all(api, 0, 400)
        ids = [a.json()["message_id"] for a in answers if a.status_code == 202]
        expected = {i for i in ids if chosen(i, 0.5)}
        await until(lambda: mirror_count(app, "sent") == len(expected), timeout=20)
    assert len(ids) == 400
    assert 150 < len(expected) < 250
    live = {m["MessageId"]: m for m in drain(sqs, queues.url, 400)}
    copies = drain(sqs, mirror.url, len(expected))
    assert set(live) == set(ids)
    assert {c["MessageAttributes"][metadata.MIRRORED]["StringValue"] for c in copies} == expected
    for copy in copies:
        original: dict[str, Any] = live[copy["MessageAttributes"][metadata.MIRRORED]["StringValue"]]
        assert copy["Body"] == original["Body"]
        assert copy["MessageAttributes"]["tenant"] == original["MessageAttributes"]["tenant"]
        assert metadata.MIRRORED not in original["MessageAttributes"]
    assert mirror_count(app, "dropped") == mirror_count(app, "failed") == 0


async def test_the_mirror_queue_deleted_while_clients_post_changes_nothing_for_them(
    queues: Queues, sqs: SQSClient
) -> None:
    mirror = make_queues(queues.endpoint, max_receive_count=1)
    async with writer(queues, mirror.url, 1.0) as (api, app):
        before = await post_all(api, 0, 100)
        await until(lambda: mirror_count(app, "sent") == 100, timeout=20)
        sqs.delete_queue(QueueUrl=mirror.url)
        after = await post_all(api, 100, 100)
        ready = await api.get("/readyz")
        # every copy accounted for: sent (before the delete took effect), failed, or dropped
        await until(lambda: sum(mirror_count(app, o) for o in ("sent", "failed", "dropped")) == 200, timeout=20)
    assert [a.status_code for a in before + after] == [202] * 200
    assert ready.status_code == 200
    assert count(sqs, queues.url)[0] == 200
    assert mirror_count(app, "failed") > 0
