"""A real redis-server for the tests: a child process on a free port on 127.0.0.1, no persistence,
started once per session and stopped at the end (nothing left running). Debian's package is
installed by ``make redis`` (deploy/redis/install.sh)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from conveyor.localstack import free_port

READY_TIMEOUT_SECONDS = 10.0


def redis_server_binary() -> str:
    found = shutil.which("redis-server", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError("redis-server is not installed: run `make redis` (Debian's package, as root)")
    return found


def ping(port: int, password: str | None = None) -> bool:
    """True once a Redis answers PING on 127.0.0.1:port."""
    client = redis.Redis(port=port, password=password, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@dataclass
class RedisServer:
    """One redis-server child process. ``stop()`` and ``start()`` again (on the same port) let tests
    take the store down and bring it back."""

    directory: Path
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()  # more redis-server options, such as ("--requirepass", "secret")
    process: subprocess.Popen[bytes] | None = None

    @property
    def password(self) -> str | None:
        return self.extra[self.extra.index("--requirepass") + 1] if "--requirepass" in self.extra else None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no", *self.extra,
        ]  # fmt: skip
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not ping(self.port, self.password):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}: see {self.directory}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def flush(self) -> None:
        """Empty every database (between tests)."""
        with redis.Redis(port=self.port, password=self.password, socket_timeout=5) as client:
            client.flushall()


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
