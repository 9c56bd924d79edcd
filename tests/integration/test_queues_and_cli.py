"""`conveyor queues create` and start-up errors, run as the real console scripts."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import TYPE_CHECKING

from conveyor.localstack import LocalStack
from tests.localstack_fixtures import BIN, Queues

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_queues_create_is_idempotent_and_sets_the_redrive_policy(localstack: LocalStack, sqs: SQSClient) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    env = Queues(name, "", "", localstack.endpoint).env(CONVEYOR_MAX_RECEIVE_COUNT="3")
    first = run([str(BIN / "conveyor"), "queues", "create"], env)
    second = run([str(BIN / "conveyor"), "queues", "create"], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert f"/{name}\n" in first.stdout
    assert f"/{name}-dlq\n" in first.stdout
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    policy = json.loads(attrs["RedrivePolicy"])
    assert policy["deadLetterTargetArn"].endswith(f":{name}-dlq")
    assert int(policy["maxReceiveCount"]) == 3


def test_wrong_endpoint_is_one_line(queues: Queues) -> None:
    result = run([str(BIN / "conveyor"), "queues", "create"], queues.env(CONVEYOR_SQS_ENDPOINT_URL="not-a-url"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("conveyor: invalid setting CONVEYOR_SQS_ENDPOINT_URL")


def test_missing_queue_stops_the_services_with_one_line(queues: Queues) -> None:
    env = queues.env(CONVEYOR_QUEUE_NAME="does-not-exist", CONVEYOR_PROCESSOR_PORT="0")
    env["CONVEYOR_PROCESSOR_PORT"] = "18999"
    for script in ("queue-writer", "queue-processor"):
        result = run([str(BIN / script)], env)
        assert result.returncode == 1, (script, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"{script}: AWS.SimpleQueueService.NonExistentQueue"), line
