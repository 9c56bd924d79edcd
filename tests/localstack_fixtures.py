"""Fixtures shared by the integration and end-to-end suites: one LocalStack per session on a free
port, a fresh queue (and its DLQ) per test, a plain boto3 client to look at what is on the queue."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from harness.localstack import BIN, LOCALSTACK_PYTHON, REPO, boto_client, freeze, thaw

from conveyor.localstack import LocalStack
from conveyor.settings import SqsSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.queues import create_queues

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient as SyncSQSClient


@dataclass(frozen=True)
class Queues:
    name: str
    url: str
    dlq_url: str
    endpoint: str

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a service process pointed at these queues."""
        return {
            **os.environ,
            "CONVEYOR_SQS_ENDPOINT_URL": self.endpoint,
            "CONVEYOR_QUEUE_NAME": self.name,
            "CONVEYOR_LOG_FORMAT": "json",
            "PYTHONPATH": str(REPO),
            **extra,
        }


def make_queues(endpoint: str, max_receive_count: int = 5, *, fifo: bool = False, **attributes: str) -> Queues:
    name = f"t-{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
    settings = SqsSettings(sqs_endpoint_url=endpoint, queue_name=name)

    async def create() -> tuple[str, str]:
        async with sqs_client(settings) as client:
            return await create_queues(client, name, max_receive_count)

    with ThreadPoolExecutor(1) as thread:  # callable from sync and async tests alike
        url, dlq_url = thread.submit(asyncio.run, create()).result()
    if attributes:
        boto_client(endpoint).set_queue_attributes(QueueUrl=url, Attributes=attributes)  # type: ignore[arg-type]
    return Queues(name, url, dlq_url, endpoint)


def drain(sqs: SyncSQSClient, url: str, expected: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Receive (and delete) messages until ``expected`` arrived or the deadline passed."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        response = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"],
        )  # fmt: skip
        for message in response.get("Messages", []):
            got.append(dict(message))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return got


def count(sqs: SyncSQSClient, url: str) -> tuple[int, int]:
    """(visible, in flight) as SQS reports them."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll with a deadline; fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack.start(LOCALSTACK_PYTHON, tmp_path_factory.mktemp("localstack"))
    yield stack
    stack.stop()


@pytest.fixture
def sqs(localstack: LocalStack) -> SyncSQSClient:
    return boto_client(localstack.endpoint)


@pytest.fixture
def queues(localstack: LocalStack) -> Queues:
    return make_queues(localstack.endpoint)


__all__ = [
    "BIN", "LOCALSTACK_PYTHON", "REPO", "Queues", "boto_client", "count", "drain", "freeze", "localstack",
    "make_queues", "queues", "sqs", "thaw", "wait_for",
]  # fmt: skip
