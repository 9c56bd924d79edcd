"""FIFO benchmark: 20 message groups x 100 messages on a FIFO queue, drained by one
`queue-processor` with the 0.1 s handler at concurrency 50.

One group's messages run one after another, so the ideal is groups x 10 msg/s (200 msg/s), whatever
the concurrency above 20. Throughput is measured in the steady state (10% to 90% of completions), as
in bench/scenarios/processor.py; SQS requests per message are counted at the processor's client (start-up
calls excluded). Targets: at least 90% of the ideal, at most 0.3 SQS requests per message.

    .venv/bin/python -m bench.run --only fifo
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from harness.localstack import boto_client, send_groups

from bench.profiles import CONVEYOR, Profile
from bench.results import Emit
from bench.scenarios.processor import (
    DONE,
    POLL_SECONDS,
    failed_requests,
    requests_after_setup,
    settle,
    steady_throughput,
)
from bench.services import free_port, queue_count, script, service, service_env

GROUPS = 20
CONCURRENCY = 50


def create_fifo_queues(endpoint: str, name: str) -> str:
    client = boto_client(endpoint)
    fifo = {"FifoQueue": "true"}
    dlq_url = client.create_queue(QueueName=f"{name}-dlq.fifo", Attributes=fifo)["QueueUrl"]  # type: ignore[arg-type]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})
    attributes = fifo | {"RedrivePolicy": policy}
    return client.create_queue(QueueName=f"{name}.fifo", Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]


def preload(endpoint: str, url: str, per_group: int) -> None:
    """Numbered messages per group, interleaved as producers of many groups would send them."""
    send_groups(boto_client(endpoint), url, GROUPS, per_group)


def run_fifo(endpoint: str, per_group: int, handler_seconds: float) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    url = create_fifo_queues(endpoint, name)
    preload(endpoint, url, per_group)
    messages = GROUPS * per_group
    port = free_port()
    env = service_env(
        endpoint, CONVEYOR_QUEUE_NAME=f"{name}.fifo", CONVEYOR_QUEUE_URL=url, CONVEYOR_PROCESSOR_PORT=str(port),
        CONVEYOR_CONCURRENCY=str(CONCURRENCY), CONVEYOR_BENCH_SLEEP=str(handler_seconds),
        CONVEYOR_HANDLER="bench.handlers:sleep",
    )  # fmt: skip
    ideal = GROUPS / handler_seconds
    deadline = time.monotonic() + 30 + 10 * messages / ideal
    marks: list[tuple[float, float]] = []
    with service(script("queue-processor"), env, port, "/metrics") as consumer:
        cpu_ready = consumer.cpu_seconds()
        while time.monotonic() < deadline:
            done = consumer.metrics().get(DONE, 0.0)
            marks.append((time.monotonic(), done))
            if done >= messages:
                break
            time.sleep(POLL_SECONDS)
        settle(endpoint, url)
        samples = consumer.metrics()
        cpu = consumer.cpu_seconds() - cpu_ready
    processed = samples.get(DONE, 0.0)
    throughput = steady_throughput(marks, messages)
    return {
        "throughput_msg_s": round(throughput, 1),
        "ideal_msg_s": ideal,
        "percent_of_ideal": round(100 * throughput / ideal, 1),
        "sqs_requests_per_message": round(requests_after_setup(samples) / max(processed, 1), 3),
        "cpu_ms_per_message": round(1000 * cpu / max(processed, 1), 3),
        "processed": int(processed),
        "lost": int(max(messages - processed, 0)),
        "left_on_queue": queue_count(endpoint, url),
        "sqs_errors": int(failed_requests(samples)),
    }


def measure(endpoint: str, profile: Profile, emit: Emit) -> None:
    # Whole receives of ten per group (100 in the full run, about 10 s at the ideal rate; 20 in the
    # quick one): a group's last receive of fewer than ten would weigh on the cost of a short run.
    per_group = 10 * max(2, round(profile.processor_seconds / 2))
    params = {
        "groups": GROUPS,
        "per_group": per_group,
        "concurrency": CONCURRENCY,
        "handler_s": profile.handler_seconds,
    }
    emit("fifo", CONVEYOR, params, run_fifo(endpoint, per_group, profile.handler_seconds))
