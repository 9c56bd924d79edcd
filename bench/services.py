"""What the benchmarks share: a LocalStack of their own, queues, service processes, /proc readings.

The plain boto3 client and LocalStack's interpreter come from tests/localstack_fixtures.py: the test
suite's harness for the local SQS is the one place for them, and a benchmark is one more user of it
(the test suite does not depend on the benchmarks for its basic plumbing).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.localstack import BIN, LOCALSTACK_PYTHON, boto_client

from conveyor.localstack import LocalStack, free_port

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MAX_RECEIVE_COUNT = "5"


@contextmanager
def localstack(gateway_server: str) -> Iterator[LocalStack]:
    """A LocalStack for one benchmark run. ``twisted`` serves about twice the requests of
    ``hypercorn`` here but listens on 0.0.0.0 (a LocalStack bug): each result row names the server."""
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as state:
        stack = LocalStack.start(LOCALSTACK_PYTHON, Path(state), gateway_server=gateway_server)
        try:
            yield stack
        finally:
            stack.stop()


def sqs_server(gateway_server: str) -> str:
    """What answers SQS calls, for the result rows: LocalStack's version and gateway server."""
    version = subprocess.run(
        [str(LOCALSTACK_PYTHON), "-c", "import importlib.metadata as m; print(m.version('localstack-core'))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return f"localstack-core {version or 'unknown'} ({gateway_server})"


def create_queues(endpoint: str, name: str) -> str:
    """The queue and its DLQ with a redrive policy, as `conveyor queues create` makes them (plain
    SQS calls: the baselines get the same queues, and no process start per queue)."""
    client = boto_client(endpoint)
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
    return client.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]


def queue_count(endpoint: str, url: str) -> int:
    """Messages on the queue, visible and in flight."""
    attributes = boto_client(endpoint).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@dataclass
class Service:
    """A server process under test (a Conveyor service or a baseline) and its HTTP port."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> dict[str, float]:
        """The service's Prometheus samples, by name with labels."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:  # noqa: S310 - local URL
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid, tree=True)

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


@contextmanager
def service(argv: Sequence[str], env: dict[str, str], port: int, ready_path: str) -> Iterator[Service]:
    """Start ``argv``, wait until ``ready_path`` answers, stop it (SIGTERM) afterwards."""
    process = subprocess.Popen(list(argv), env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    running = Service(process, port)
    try:
        wait_http(running.url + ready_path, 30, process)
        yield running
    finally:
        if process.poll() is None:
            running.stop()


def script(name: str) -> list[str]:
    """A console script of this install (queue-writer, queue-processor)."""
    return [str(BIN / name)]


def module(name: str, *args: str) -> list[str]:
    """A Python module run with the project's interpreter (the baselines)."""
    return [sys.executable, "-m", name, *args]


def service_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "PYTHONPATH": str(REPO), "CONVEYOR_SQS_ENDPOINT_URL": endpoint, "CONVEYOR_LOG_LEVEL": "warning",
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",  # LocalStack's
        "AWS_EC2_METADATA_DISABLED": "true", **extra,
    }  # fmt: skip


def process_cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU of ``pid`` (and, with ``tree``, of its live children, e.g. uvicorn workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    if tree:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += process_cpu_seconds(int(child), tree=True)
    return total


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own local URL
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def sum_samples(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0 < p < 100; inclusive method), None without data."""
    if len(values) < 2:
        return round(values[0], 2) if values else None
    return round(statistics.quantiles(values, n=1000, method="inclusive")[round(p * 10) - 1], 2)


__all__ = ["free_port"]
