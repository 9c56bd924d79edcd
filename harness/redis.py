"""A real redis-server: a child process on a free port on 127.0.0.1, no persistence. Debian's package
is installed by ``make redis`` (deploy/redis/install.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

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
