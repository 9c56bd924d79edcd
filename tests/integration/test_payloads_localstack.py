"""Payloads through S3 on LocalStack (SQS and S3), against the AWS Python extended client from PyPI
(``amazon-sqs-extended-client``): what Conveyor offloads that client reads, and what it sends, in its
current and its legacy (the Java client's default) form, Conveyor's processor handles."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest

from conveyor import Message
from conveyor.localstack import LocalStack
from conveyor.payloads.client import s3_client
from conveyor.payloads.pointer import LEGACY_POINTER_CLASS, LEGACY_SIZE_ATTRIBUTE, POINTER_CLASS, SIZE_ATTRIBUTE
from conveyor.payloads.store import PayloadStore
from conveyor.processor.config import EngineConfig
from conveyor.processor.engine import Engine
from conveyor.settings import ProcessorSettings, WriterSettings
from conveyor.sqs.client import sqs_client
from conveyor.writer.app import create_app
from tests.localstack_fixtures import BIN, REPO, Queues, count, make_queues
from tests.polling import until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

MIB = 1024 * 1024
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}


@pytest.fixture
def s3(localstack: LocalStack) -> S3Client:
    return boto3.client("s3", endpoint_url=localstack.endpoint, **CREDENTIALS)  # type: ignore[call-overload,no-any-return]


@pytest.fixture
def bucket(s3: S3Client) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def aws_client(localstack: LocalStack, *args: str, stdin: str = "") -> Any:
    """Run the AWS extended client (tests/integration/extended_client.py) in its own process."""
    env = {**os.environ, "AWS_ENDPOINT_URL": localstack.endpoint, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.extended_client", *args],
        input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if args[0] == "receive" else None


def keys(s3: S3Client, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


@asynccontextmanager
async def writer(queues: Queues, bucket: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    config = WriterSettings(
        sqs_endpoint_url=queues.endpoint, queue_name=queues.name, payload_bucket=bucket,
        max_request_bytes=8 * MIB, **settings,
    )  # fmt: skip
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer", timeout=30) as client:
            yield client


@asynccontextmanager
async def processor(queues: Queues, handler: Callable[[Message], Awaitable[None]]) -> AsyncIterator[Engine]:
    settings = ProcessorSettings(sqs_endpoint_url=queues.endpoint, queue_name=queues.name)
    async with sqs_client(settings) as client, s3_client(settings) as s3:
        config = EngineConfig(
            queue_url=queues.url, dlq_url=queues.dlq_url, concurrency=5, prefetch=10, pollers=1,
            wait_time_seconds=1, visibility_timeout=10, max_receive_count=5, retry_base_seconds=0,
            retry_max_seconds=0, delete_linger=0.01, shutdown_grace=5, poll_error_backoff_max=0.2,
        )  # fmt: skip
        engine = Engine(client, config, handler, payloads=PayloadStore(s3))
        task = asyncio.create_task(engine.run())
        try:
            yield engine
        finally:
            engine.stop()
            await asyncio.wait_for(task, 30)


def raw_receive(sqs: SQSClient, url: str) -> dict[str, Any]:
    response = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, MessageAttributeNames=["All"], VisibilityTimeout=0)
    [message] = response["Messages"]
    return dict(message)


async def test_a_3_mb_post_is_stored_in_s3_and_the_aws_client_reads_it_back(
    queues: Queues, sqs: SQSClient, s3: S3Client, bucket: str, localstack: LocalStack
) -> None:
    payload = {"blob": "x" * (3 * 1000 * 1000)}
    async with writer(queues, bucket) as api:
        response = await api.post("/messages", json={"body": payload, "attributes": {"tenant": "acme"}})
        metrics = (await api.get("/metrics")).text
    assert response.status_code == 202, response.text
    assert 'conveyor_s3_requests_total{operation="PutObject",outcome="ok"} 1.0' in metrics
    assert 'conveyor_payloads_total{event="stored"} 1.0' in metrics
    raw = raw_receive(sqs, queues.url)  # what is on the queue: the pointer
    cls, where = json.loads(raw["Body"])
    assert (cls, where["s3BucketName"]) == (POINTER_CLASS, bucket)
    stored = s3.get_object(Bucket=bucket, Key=where["s3Key"])["Body"].read()
    assert stored == json.dumps(payload, separators=(",", ":")).encode()
    assert raw["MessageAttributes"][SIZE_ATTRIBUTE] == {"DataType": "Number", "StringValue": str(len(stored))}
    # the AWS client reads Conveyor's message as one of its own
    [message] = aws_client(localstack, "receive", bucket, queues.url)
    assert message["Body"] == stored.decode()
    assert message["MessageAttributes"]["tenant"]["StringValue"] == "acme"
    assert SIZE_ATTRIBUTE not in message["MessageAttributes"]


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])
async def test_what_the_aws_client_offloads_is_handled_and_its_object_deleted(
    queues: Queues, s3: S3Client, bucket: str, localstack: LocalStack, legacy: bool
) -> None:
    body = json.dumps({"order": 1, "blob": "y" * 3000})  # (the client sends it through S3 whatever its size)
    aws_client(localstack, "send", bucket, queues.url, "1" if legacy else "0", stdin=body)
    [key] = keys(s3, bucket)
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)

    async with processor(queues, handler):
        await until(lambda: bool(seen) and keys(s3, bucket) == [], timeout=20)
    [message] = seen
    assert message.body == body
    assert message.payload_location == f"s3://{bucket}/{key}"
    assert (LEGACY_SIZE_ATTRIBUTE if legacy else SIZE_ATTRIBUTE) not in message.attributes


async def test_a_missing_object_is_dead_lettered_peeked_and_redriven_once_it_is_back(
    queues: Queues, sqs: SQSClient, s3: S3Client, bucket: str, localstack: LocalStack
) -> None:
    body = "z" * 3000
    aws_client(localstack, "send", bucket, queues.url, "1", stdin=body)
    [key] = keys(s3, bucket)
    s3.delete_object(Bucket=bucket, Key=key)
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.body)

    async with processor(queues, handler):
        await until(lambda: count(sqs, queues.dlq_url)[0] == 1, timeout=20)
    assert seen == []
    peek = conveyor(queues, "dlq", "peek", "--json")
    [record] = [json.loads(line) for line in peek.stdout.splitlines()]
    assert record["dead_letter"]["error_type"] == "conveyor.payloads.errors.PayloadMissingError"
    assert record["payload"] == {
        "bucket": bucket, "key": key, "size": len(body), "location": f"s3://{bucket}/{key}"
    }  # fmt: skip
    assert json.loads(record["body"])[0] == LEGACY_POINTER_CLASS  # the copy is the pointer, as received
    human = conveyor(queues, "dlq", "peek")
    assert (
        f"    payload: in S3 at s3://{bucket}/{key} ({len(body)} bytes; kept while the message is here)" in human.stdout
    )
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())  # the object is back (restored from a backup, say)
    moved = conveyor(queues, "dlq", "redrive")
    assert "moved 1, skipped 0, failed 0" in moved.stdout, moved.stdout + moved.stderr
    async with processor(queues, handler):
        await until(lambda: seen == [body] and keys(s3, bucket) == [], timeout=20)
    assert count(sqs, queues.url) == (0, 0)


async def test_a_bucket_that_does_not_exist_is_a_503_and_nothing_is_sent(queues: Queues, sqs: SQSClient) -> None:
    async with writer(queues, "no-such-bucket-here") as api:
        response = await api.post("/messages", json={"body": {"blob": "x" * (2 * MIB)}})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.json()["code"] == "NoSuchBucket"
    assert count(sqs, queues.url) == (0, 0)


def conveyor(queues: Queues, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "conveyor"), *args], env=queues.env(), capture_output=True, text=True, timeout=120, check=False
    )


def test_queues_create_makes_the_named_bucket(localstack: LocalStack, s3: S3Client) -> None:
    queues = make_queues(localstack.endpoint)
    name = f"t-{uuid.uuid4().hex[:12]}"
    created = subprocess.run(
        [str(BIN / "conveyor"), "queues", "create"], env=queues.env(CONVEYOR_PAYLOAD_BUCKET=name),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[-1] == f"payload bucket: {name}"
    s3.head_bucket(Bucket=name)  # raises if it is not there
    again = subprocess.run(
        [str(BIN / "conveyor"), "queues", "create"], env=queues.env(CONVEYOR_PAYLOAD_BUCKET=name),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr  # idempotent, like the queues
