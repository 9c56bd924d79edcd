"""The shared rate limit's bucket on a real redis-server: one queue of reservations for every processor
naming the key, refunds, the key's expiry, and the fallback when the server is gone."""

from __future__ import annotations

import time

import redis.asyncio

from conveyor.idempotency.redis_store import redis_client
from conveyor.localstack import free_port
from conveyor.processor.engine.flow.rate import KEY_PREFIX, RedisBucket
from tests.redis_fixtures import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]  # the fixtures, imported for pytest


async def test_two_processes_buckets_on_one_key_queue_up_behind_each_other(redis_url: str) -> None:
    first = RedisBucket(redis_client(redis_url), 20, "work")
    second = RedisBucket(redis_client(redis_url), 20, "work")
    try:
        began = time.monotonic()
        wait_first = await first.reserve(10)
        wait_second = await second.reserve(10)
        elapsed = time.monotonic() - began
        # the bucket starts empty: 10 tokens at 20/s are 0.5 s away, the next 10 another 0.5 s (less
        # what the server's clock moved between the two calls, at most what ours did)
        assert 0.5 - elapsed <= wait_first <= 0.5
        assert 1.0 - elapsed <= wait_second <= 1.0
        other = RedisBucket(redis_client(redis_url), 20, "another-queue")
        assert await other.reserve(10) <= 0.5  # another key, another bucket
        await other.aclose()
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_refund_gives_the_tokens_to_the_next_reservation(redis_url: str) -> None:
    bucket = RedisBucket(redis_client(redis_url), 10, "work")
    try:
        began = time.monotonic()
        await bucket.reserve(10)  # 1 s of debt
        await bucket.refund(10)  # the receive brought nothing
        wait = await bucket.reserve(5)
        elapsed = time.monotonic() - began
        assert 0.5 - elapsed <= wait <= 0.5
    finally:
        await bucket.aclose()


async def test_the_key_expires_once_idle(redis_url: str) -> None:
    bucket = RedisBucket(redis_client(redis_url), 20, "work")
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await bucket.reserve(1)
        ttl = await client.ttl(KEY_PREFIX + "work")
        assert 0 < ttl <= 61
    finally:
        await bucket.aclose()
        await client.aclose()


async def test_with_the_server_gone_the_limit_holds_in_the_process() -> None:
    failures: list[int] = []
    began = time.monotonic()
    bucket = RedisBucket(
        redis_client(f"redis://127.0.0.1:{free_port()}/0"), 20, "work", on_failure=lambda: failures.append(1)
    )
    try:
        wait = await bucket.reserve(10)
        # the local bucket: empty when made, 20/s since (the refused connection takes longer on a loaded machine)
        assert 0.5 - (time.monotonic() - began) <= wait <= 0.5
        assert failures == [1]
    finally:
        await bucket.aclose()
