"""Effectively once on a real local SQS: copies of one key, put on the queue by a plain
boto3 producer, complete the handler once, with one processor (SQLite store) or two (Redis)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor import Message, metadata
from conveyor.idempotency import open_store
from conveyor.processor.engine.dedupe import Dedupe
from tests.integration.test_processor_localstack import engine_on
from tests.localstack_fixtures import Queues, count
from tests.polling import until
from tests.redis_fixtures import redis_server, redis_url

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = ["redis_server", "redis_url"]


def put_copies(sqs: SQSClient, url: str, keys: int, copies: int) -> None:
    """``copies`` messages per key, each carrying the key as the writer would set it."""
    for n in range(copies):
        entries = [
            {"Id": f"k{k}", "MessageBody": json.dumps({"key": f"k{k}", "copy": n}),
             "MessageAttributes": {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": f"k{k}"}}}
            for k in range(keys)
        ]  # fmt: skip
        for start in range(0, len(entries), 10):
            sqs.send_message_batch(QueueUrl=url, Entries=entries[start : start + 10])  # type: ignore[arg-type]


async def test_copies_of_a_key_complete_once_with_the_sqlite_store(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    put_copies(sqs, queues.url, keys=10, copies=3)
    completed: Counter[str] = Counter()

    async def handler(message: Message) -> None:
        completed[message.json()["key"]] += 1

    async with open_store(f"sqlite:///{tmp_path}/store.sqlite3") as store:
        dedupe = Dedupe(store, visibility_timeout=5, ttl_seconds=600, linger=0.01)
        async with engine_on(queues, handler, dedupe=dedupe) as engine:
            await until(lambda: count(sqs, queues.url) == (0, 0), 30, "queue empty")
            skipped = engine.metrics.registry.get_sample_value("conveyor_processor_duplicates_skipped_total")
    assert completed == Counter({f"k{k}": 1 for k in range(10)})
    assert skipped == 20


async def test_two_processors_sharing_redis_complete_each_key_once(
    queues: Queues, sqs: SQSClient, redis_url: str
) -> None:
    put_copies(sqs, queues.url, keys=20, copies=3)
    completed: Counter[str] = Counter()

    async def handler(message: Message) -> None:
        await asyncio.sleep(0.05)
        completed[message.json()["key"]] += 1

    async with AsyncExitStack() as stack:
        for _ in range(2):  # two processors, each with its own connection to the store
            store = await stack.enter_async_context(open_store(redis_url))
            dedupe = Dedupe(store, visibility_timeout=5, ttl_seconds=600, linger=0.01)
            await stack.enter_async_context(engine_on(queues, handler, dedupe=dedupe, concurrency=5))
        await until(lambda: count(sqs, queues.url) == (0, 0), 60, "queue empty")
    assert completed == Counter({f"k{k}": 1 for k in range(20)})
