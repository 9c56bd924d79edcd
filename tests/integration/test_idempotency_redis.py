"""What only the Redis store has: a store that is down or hangs, passwords, database numbers, scripts
that Redis forgot, a script run again by redis-py's retry, and the values as Redis holds them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import redis
from conveyor.idempotency import Claim, RequestState, StoredResponse, StoreUnavailableError, open_store, records
from conveyor.idempotency.redis_store import FINISH_AND_BEGIN, SOCKET_TIMEOUT_SECONDS, RedisStore, redis_client
from conveyor.localstack import free_port
from tests.redis_fixtures import DelayingProxy, RedisServer, redis_server, redis_url

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
        marker = json.loads(db3.get("conveyor:w:request") or b"")
        assert marker == {"fingerprint": "fp", "state": "in_flight", "token": marker["token"]}
        assert re.fullmatch(r"[0-9a-f]{32}:0", marker["token"])  # the round's random id and the position
        assert 29_000 < db3.pttl("conveyor:h:claimed") <= 30_000
        assert 3_599_000 < db3.pttl("conveyor:h:done") <= 3_600_000


async def test_scripts_that_redis_forgot_are_loaded_again(redis_server: RedisServer, redis_url: str) -> None:
    async with open_store(redis_url) as store:
        assert await store.claim(["k"], "a", 30) == [Claim.CLAIMED]
        with redis.Redis(port=redis_server.port) as admin:
            admin.script_flush()
        assert await store.claim(["k"], "b", 30) == [Claim.IN_PROGRESS]


@asynccontextmanager
async def delayed_store(server: RedisServer) -> AsyncIterator[tuple[RedisStore, DelayingProxy]]:
    """A Redis store (the services' own client settings) reaching ``server`` through a proxy that can
    hold a reply back."""
    proxy = DelayingProxy(server.port)
    async with proxy as port, RedisStore(redis_client(f"redis://127.0.0.1:{port}/0")) as store:
        yield store, proxy


async def test_a_begin_whose_answer_came_late_is_new_when_redis_py_runs_it_again(
    redis_server: RedisServer, redis_url: str
) -> None:
    """redis-py retries once after a socket timeout; Redis had run the script, only its answer was late.
    The rerun finds the marker the first run wrote (its own token): the request is NEW, not a 409."""
    async with delayed_store(redis_server) as (store, proxy):
        assert (await store.begin_request("warm-up", "fp", 60)).state is RequestState.NEW  # the script is loaded
        # WHEN Redis runs the script but its answer comes after the socket timeout
        proxy.delay_next = SOCKET_TIMEOUT_SECONDS + 1
        claim = await store.begin_request("first-time", "fp", 82)
        # THEN the request is the key's first: NEW
        assert claim.state is RequestState.NEW, f"answered {claim.state} (retry_after={claim.retry_after})"
        # AND a key given twice in one round is still NEW, then IN_FLIGHT
        proxy.delay_next = SOCKET_TIMEOUT_SECONDS + 1
        claims = await store.begin_requests([("twice", "fp"), ("twice", "fp")], 82)
        assert [c.state for c in claims] == [RequestState.NEW, RequestState.IN_FLIGHT]
        # AND a repeat (a round of its own) is told the first is in flight
        assert (await store.begin_request("first-time", "fp", 82)).state is RequestState.IN_FLIGHT


async def test_the_finish_and_begin_script_run_twice_answers_the_same(
    redis_server: RedisServer, redis_url: str
) -> None:
    """What a retry does, without the timing: the same call (keys and arguments) twice."""
    async with open_store(redis_url) as store:  # a completed key, another writer's marker, one to abandon
        await store.finish_request("done", "fp", StoredResponse(202, b"{}", "application/json"), 60)
        await store.begin_requests([("theirs", "fp"), ("dropped", "fp")], 60)
    with redis.Redis(port=redis_server.port) as client:
        finish_and_begin = client.register_script(FINISH_AND_BEGIN)
        begin = ["new", "new", "done", "theirs"]
        keys = [records.request_key(k) for k in ["finished", "dropped", *begin]]
        markers = records.in_flight_records(["fp"] * len(begin), records.marker_tokens(None, len(begin)))
        args = [60_000, 60_000, 1, 1, records.response_record("fp", StoredResponse(202, b"{}", "a/j")), "", *markers]
        first, again = json.loads(finish_and_begin(keys, args)), json.loads(finish_and_begin(keys, args))
        assert [a[0] for a in first] == [a[0] for a in again] == ["new", "in_flight", "completed", "in_flight"]
        assert client.get(records.request_key("dropped")) is None
        assert client.get(records.request_key("new")) == markers[0].encode()


async def test_markers_written_before_the_token_existed_are_read(redis_server: RedisServer, redis_url: str) -> None:
    old_marker = json.dumps({"fingerprint": "fp", "state": "in_flight"})
    with redis.Redis(port=redis_server.port) as client:
        client.set(records.request_key("old"), old_marker, px=60_000)
    async with open_store(redis_url) as store:
        assert (await store.begin_request("old", "fp", 60)).state is RequestState.IN_FLIGHT
        await store.abandon_request("old")
        assert (await store.begin_request("old", "fp", 60)).state is RequestState.NEW
