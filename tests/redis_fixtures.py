"""The real redis-server (harness/redis.py) as fixtures: started once per session and stopped at the
end (nothing left running), emptied for each test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from harness.redis import RedisServer, ping, redis_server_binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url


class DelayingProxy:
    """A TCP proxy in front of a Redis on 127.0.0.1 that can hold back the next reply (a store that
    ran a command but whose answer comes late). ``async with DelayingProxy(port) as proxy_port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.delay_next = 0.0  # seconds to hold the next reply back (then 0 again)
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            self._server.close_clients()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        await asyncio.gather(self._pump(reader, up_writer, replies=False), self._pump(up_reader, writer, replies=True))

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter, *, replies: bool) -> None:
        try:
            while data := await source.read(65536):
                if replies and self.delay_next:
                    delay, self.delay_next = self.delay_next, 0.0
                    await asyncio.sleep(delay)
                target.write(data)
                await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            target.close()


__all__ = ["DelayingProxy", "RedisServer", "ping", "redis_server", "redis_server_binary", "redis_url"]
