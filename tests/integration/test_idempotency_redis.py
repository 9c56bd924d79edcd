"""What only the Redis store has: a store that is down or hangs, passwords, database numbers, scripts
that Redis forgot, and the values as Redis holds them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conveyor.idempotency import Claim, StoredResponse, StoreUnavailableError, open_store
from conveyor.localstack import free_port
from tests.redis_fixtures import RedisServer, redis_server, redis_url

__all__ = ["redis_server", "redis_url"]

DEADLINE = 10.0  # far above what a prompt failure takes, far below a hang


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop, pause or restart."""
    server = RedisServer(tmp_path).start()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


async def test_a_port_nothing_listens_on_is_unavailable_at_once() -> None:
    async with open_store(f"redis://127.0.0.1:{free_port()}/0") as store:
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(StoreUnavailableError, match="Redis store: ConnectionError"):
                await store.claim(["k"], "a", 30)
            with pytest.raises(StoreUnavailableError):
                await store.begin_request("k", "fp", 30)
            with pytest.raises(StoreUnavailableError):
                await store.finish_request("k", "fp", StoredResponse(202, b"{}", "application/json"), 30)


async def test_a_stopped_redis_is_unavailable_and_a_restarted_one_serves_again(own_server: RedisServer) -> None:
    async with open_store(own_server.url) as store:
        assert await store.claim(["k"], "a", 30) == [Claim.CLAIMED]
        own_server.stop()
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(StoreUnavailableError):
                await store.complete(["k"], "a", 30)
        own_server.start()  # same port, empty (no persistence): scripts must be loaded again
        assert await store.claim(["k"], "b", 30) == [Claim.CLAIMED]


async def test_a_redis_that_hangs_is_unavailable_after_the_socket_timeout(own_server: RedisServer) -> None:
    async with open_store(own_server.url + "?socket_timeout=0.3") as store:
        await store.claim(["warm"], "a", 30)
        assert own_server.process is not None
        os.kill(own_server.process.pid, signal.SIGSTOP)
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(StoreUnavailableError, match="Timeout"):
                await store.claim(["k"], "a", 30)


async def test_a_password_in_the_url_is_used(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra=("--requirepass", "s3cret")).start()
    try:
        async with open_store(server.url) as store:
            assert await store.claim(["k"], "a", 30) == [Claim.CLAIMED]
        async with open_store(server.url.replace("s3cret", "wrong")) as store:
            with pytest.raises(StoreUnavailableError) as raised:
                await store.claim(["k"], "a", 30)
            assert "wrong" not in str(raised.value)
    finally:
        server.stop()


async def test_the_database_number_is_used_and_values_are_plain_json(redis_server: RedisServer, redis_url: str) -> None:
    async with open_store(redis_url.replace("/0", "/3")) as store:
        await store.claim(["claimed"], "owner-1", 30)
        await store.claim(["done"], "owner-1", 30)
        await store.complete(["done"], "owner-1", 3600)
        await store.begin_request("request", "fp", 30)
    with redis.Redis(port=redis_server.port, db=3) as db3, redis.Redis(port=redis_server.port, db=0) as db0:
        assert db0.dbsize() == 0
        assert json.loads(db3.get("conveyor:h:claimed") or b"") == {"owner": "owner-1", "state": "claimed"}
        assert json.loads(db3.get("conveyor:h:done") or b"") == {"state": "completed"}
        assert json.loads(db3.get("conveyor:w:request") or b"") == {"fingerprint": "fp", "state": "in_flight"}
        assert 29_000 < db3.pttl("conveyor:h:claimed") <= 30_000
        assert 3_599_000 < db3.pttl("conveyor:h:done") <= 3_600_000


async def test_scripts_that_redis_forgot_are_loaded_again(redis_server: RedisServer, redis_url: str) -> None:
    async with open_store(redis_url) as store:
        assert await store.claim(["k"], "a", 30) == [Claim.CLAIMED]
        with redis.Redis(port=redis_server.port) as admin:
            admin.script_flush()
        assert await store.claim(["k"], "b", 30) == [Claim.IN_PROGRESS]
