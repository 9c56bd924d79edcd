"""The real services as separate processes (their console scripts), HTTP load, and the record of
deliveries that the test handlers (tests/handlers.py) write to SQLite."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conveyor.localstack import free_port
from tests.localstack_fixtures import BIN, Queues, wait_for


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:  # noqa: S310 - local
                return bool(response.status == 200)
        except OSError:
            return False

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


STARTED: list[Proc] = []  # every process a test started; the e2e conftest reaps what a failure left


def reap(keep: int = 0) -> None:
    """Kill and wait for what was started after the first ``keep`` (a failed test's leftovers)."""
    while len(STARTED) > keep:
        proc = STARTED.pop()
        if proc.process.poll() is None:
            proc.process.kill()
        proc.process.wait()


def start(
    script: str, env: dict[str, str], port: int, log: Path, wait_ready: bool = True, *, cwd: Path | None = None
) -> Proc:
    with log.open("ab") as out:
        process = subprocess.Popen([str(BIN / script)], env=env, stderr=out, stdout=out, cwd=cwd)
    proc = Proc(process, port, log)
    STARTED.append(proc)
    if wait_ready:
        wait_for(lambda: proc.ready() or process.poll() is not None, 30, f"{script} ready")
        assert process.poll() is None, log.read_text()[-2000:]
    return proc


@contextmanager
def writer(queues: Queues, tmp: Path, **extra: str) -> Iterator[Proc]:
    port = free_port()
    env = queues.env(CONVEYOR_WRITER_PORT=str(port), **extra)
    proc = start("queue-writer", env, port, tmp / f"writer-{port}.log")
    try:
        yield proc
    except BaseException:
        proc.stop()
        raise
    assert proc.stop() == 0, "queue-writer did not exit 0 on SIGTERM"


@contextmanager
def stopped_at_the_end(proc: Proc) -> Iterator[Proc]:
    """Stop ``proc`` (SIGTERM) when the block ends: it must exit 0 then; after a failure in the block
    it is stopped without that check, so the first failure is the one reported."""
    try:
        yield proc
    except BaseException:
        proc.stop()
        raise
    assert proc.stop() == 0, f"{proc.log.name}: did not exit 0 on SIGTERM"


def processor_env(queues: Queues, record: Path, handler: str = "tests.handlers:work", **extra: str) -> dict[str, str]:
    defaults = {"CONVEYOR_WAIT_TIME_SECONDS": "2", "CONVEYOR_SQS_READ_TIMEOUT_SECONDS": "10"}
    return queues.env(CONVEYOR_HANDLER=handler, CONVEYOR_TEST_RECORD=str(record), **(defaults | extra))


def start_processor(
    queues: Queues, tmp: Path, record: Path, handler: str = "tests.handlers:work", **extra: str
) -> Proc:
    port = free_port()
    env = processor_env(queues, record, handler, CONVEYOR_PROCESSOR_PORT=str(port), **extra)
    return start("queue-processor", env, port, tmp / f"processor-{port}.log")


@dataclass
class Posted:
    """What the HTTP clients saw: the body's key -> (status, message id, request id)."""

    results: dict[str, tuple[int, str | None, str]] = field(default_factory=dict)

    @property
    def accepted(self) -> set[str]:
        return {key for key, (status, _, _) in self.results.items() if status == 202}

    def statuses(self) -> Counter[int]:
        return Counter(status for status, _, _ in self.results.values())


async def _post_all(base: str, keys: list[str], clients: int, posted: Posted, pause: float) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                key = queue.get_nowait()
                request_id = f"req-{key}"
                try:
                    response = await client.post(
                        "/messages", json={"body": {"key": key}}, headers={"X-Request-ID": request_id}
                    )
                    status = response.status_code
                    message_id = response.json().get("message_id") if status == 202 else None
                    if status == 503:
                        assert response.headers["retry-after"]
                        assert response.headers["content-type"] == "application/problem+json"
                except httpx.TransportError:
                    status, message_id = 0, None
                posted.results[key] = (status, message_id, request_id)
                if pause:
                    await asyncio.sleep(pause)

        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(worker())


def post_messages(base: str, count: int, clients: int = 16, pause: float = 0.0) -> Posted:
    """POST ``count`` messages ``{"body": {"key": ...}}`` with ``clients`` concurrent clients."""
    posted = Posted()
    keys = [uuid.uuid4().hex[:12] for _ in range(count)]
    asyncio.run(_post_all(base, keys, clients, posted, pause))
    return posted


class Record:
    """Deliveries the test handlers recorded (one row per successful handler call)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self) -> list[tuple[str, str, str | None, int]]:
        if not self.path.exists():
            return []
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            try:
                return list(db.execute("SELECT message_id, body, request_id, receive_count FROM deliveries"))
            except sqlite3.OperationalError:  # the table does not exist yet
                return []

    def pids(self) -> Counter[int]:
        """Deliveries by the pid of the process that handled them."""
        if not self.path.exists():
            return Counter()
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            try:
                return Counter(pid for (pid,) in db.execute("SELECT pid FROM deliveries"))
            except sqlite3.OperationalError:  # the table does not exist yet
                return Counter()

    def keys(self) -> Counter[str]:
        return Counter(json.loads(body)["key"] for _, body, _, _ in self.rows())

    def wait_for_keys(self, keys: set[str], timeout: float) -> None:
        wait_for(lambda: keys <= set(self.keys()), timeout, f"{len(keys)} messages processed")


def duplicates(counts: Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 2)
