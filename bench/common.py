"""What the benchmarks share: a LocalStack of their own, queues, service processes, /proc readings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3

from conveyor.localstack import LocalStack, free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCALSTACK_PYTHON = REPO / ".venv-localstack" / "bin" / "python"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def localstack(gateway_server: str) -> Iterator[LocalStack]:
    """A LocalStack for one benchmark. ``twisted`` serves about twice the requests of ``hypercorn``
    here but listens on 0.0.0.0 (a LocalStack bug): the benchmarks say which one they used."""
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as state:
        stack = LocalStack.start(LOCALSTACK_PYTHON, Path(state), gateway_server=gateway_server)
        try:
            yield stack
        finally:
            stack.stop()


def sqs(endpoint: str):  # type: ignore[no-untyped-def]  # boto3's client type is generated
    return boto3.client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",  # noqa: S106 - LocalStack's dummies
    )  # fmt: skip


def create_queues(endpoint: str, name: str) -> str:
    env = {**os.environ, "CONVEYOR_SQS_ENDPOINT_URL": endpoint, "CONVEYOR_QUEUE_NAME": name}
    subprocess.run([str(BIN / "conveyor"), "queues", "create"], env=env, check=True, capture_output=True)
    return str(sqs(endpoint).get_queue_url(QueueName=name)["QueueUrl"])


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int

    def metrics(self) -> dict[str, float]:
        """The service's Prometheus samples, by name with labels."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def cpu_seconds(self, *, tree: bool = False) -> float:
        return process_cpu_seconds(self.process.pid, tree=tree)

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


@contextmanager
def service(script: str, env: dict[str, str], port: int, ready_path: str) -> Iterator[Service]:
    process = subprocess.Popen([str(BIN / script)], env=env, stderr=subprocess.DEVNULL)
    running = Service(process, port)
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", 30)
        yield running
    finally:
        if process.poll() is None:
            running.stop()


def process_cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU of ``pid`` (and, with ``tree``, of its live children, e.g. uvicorn workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    if tree:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += process_cpu_seconds(int(child), tree=True)
    return total


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own local URL
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def sum_samples(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


__all__ = ["free_port"]
