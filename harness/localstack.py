"""LocalStack for the tests and the benchmarks: where its interpreter is, a boto3 client on it, and an
SQS outage made by freezing it."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from conveyor.localstack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient as SyncSQSClient

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # this installation's console scripts
LOCALSTACK_PYTHON = Path(os.environ.get("CONVEYOR_LOCALSTACK_PYTHON", REPO / ".venv-localstack/bin/python"))


def boto_client(endpoint: str) -> SyncSQSClient:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - LocalStack's dummy credentials
    )


def send_groups(sqs: SyncSQSClient, url: str, groups: int, each: int) -> None:
    """Numbered messages ``{"g": "g<k>", "n": n}`` for each of ``groups`` FIFO groups, interleaved
    across groups as producers of many groups would send them, ten per SendMessageBatch from one
    sender (so the order within each group is the send order), with explicit deduplication ids."""
    bodies = [(f"g{g}", n) for n in range(each) for g in range(groups)]
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps({"g": g, "n": n}), "MessageGroupId": g,
             "MessageDeduplicationId": f"{g}-{n}"}
            for i, (g, n) in enumerate(bodies[start : start + 10])
        ]  # fmt: skip
        sqs.send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]


def freeze(stack: LocalStack) -> None:
    """An SQS outage: freeze LocalStack's whole process group (SIGSTOP). It stops answering but keeps
    its queues (a restarted LocalStack would have none); to its clients it is just as gone."""
    os.killpg(stack.process.pid, signal.SIGSTOP)


def thaw(stack: LocalStack) -> None:
    os.killpg(stack.process.pid, signal.SIGCONT)
