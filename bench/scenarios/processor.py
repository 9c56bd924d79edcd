"""Processor benchmark: preload N messages, drain them with a 0.1 s handler, Conveyor's
queue-processor and the naive consumer (bench/baselines/naive_consumer.py) side by side.

For each system and concurrency: drain throughput in the steady state (between the 10th and the
90th percentile of completions) against the ideal concurrency / 0.1 s, SQS requests per message
(every API call after start-up, counted by both at their client with botocore's after-call events),
CPU ms per message and peak RSS of the consumer process, and what was lost (messages preloaded but
never processed, or left on the queue).
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from harness.localstack import boto_client

from bench.profiles import CONVEYOR, NAIVE, Profile
from bench.results import Emit
from bench.services import (
    create_queues,
    free_port,
    module,
    queue_count,
    script,
    service,
    service_env,
    sum_samples,
)

DONE = "conveyor_processor_succeeded_total"
REQUESTS = "conveyor_sqs_requests_total"
SETUP_OPERATIONS = ('operation="GetQueueUrl"', 'operation="GetQueueAttributes"')
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Drain:
    system: str
    concurrency: int
    messages: int
    handler_seconds: float
    extra_env: tuple[tuple[str, str], ...] = ()  # more settings for the consumer (an idempotency store, say)


def preload(endpoint: str, url: str, count: int) -> None:
    client = boto_client(endpoint)
    body = json.dumps({"payload": "x" * 200})

    def send(start: int) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, count - start))]
        client.send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, range(0, count, 10)))


def command(drain: Drain, url: str, port: int, endpoint: str, queue: str) -> tuple[list[str], dict[str, str]]:
    env = service_env(
        endpoint, CONVEYOR_QUEUE_NAME=queue, CONVEYOR_QUEUE_URL=url, CONVEYOR_PROCESSOR_PORT=str(port),
        CONVEYOR_CONCURRENCY=str(drain.concurrency), CONVEYOR_BENCH_SLEEP=str(drain.handler_seconds),
    )  # fmt: skip
    env |= dict(drain.extra_env)
    if drain.system == CONVEYOR:
        env["CONVEYOR_HANDLER"] = "bench.handlers:sleep"
        env["CONVEYOR_SQS_MAX_POOL_CONNECTIONS"] = str(max(64, drain.concurrency))
        return script("queue-processor"), env
    env["CONVEYOR_HANDLER"] = "bench.handlers:sleep_sync"
    return module("bench.baselines.naive_consumer"), env


def requests_after_setup(samples: dict[str, float]) -> float:
    setup = sum(v for k, v in samples.items() if k.startswith(REQUESTS) and any(op in k for op in SETUP_OPERATIONS))
    return sum_samples(samples, REQUESTS) - setup


def failed_requests(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith(REQUESTS) and 'outcome="ok"' not in k)


def run_drain(endpoint: str, drain: Drain) -> dict[str, Any]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    url = create_queues(endpoint, queue)
    preload(endpoint, url, drain.messages)
    port = free_port()
    argv, env = command(drain, url, port, endpoint, queue)
    ideal = drain.concurrency / drain.handler_seconds
    deadline = time.monotonic() + 30 + 10 * drain.messages / ideal  # a tenth of the ideal rate, or lost
    marks: list[tuple[float, float]] = []
    with service(argv, env, port, "/metrics") as consumer:
        cpu_ready, done_ready = consumer.cpu_seconds(), consumer.metrics().get(DONE, 0.0)
        while time.monotonic() < deadline:
            done = consumer.metrics().get(DONE, 0.0)
            marks.append((time.monotonic(), done))
            if done >= drain.messages:
                break
            time.sleep(POLL_SECONDS)
        settle(endpoint, url)  # the last deletes are coalesced: counted once they are made
        samples = consumer.metrics()
        cpu = consumer.cpu_seconds() - cpu_ready
        rss = consumer.peak_rss_mb()
    processed = samples.get(DONE, 0.0)
    left = queue_count(endpoint, url)
    return {
        "throughput_msg_s": round(steady_throughput(marks, drain.messages), 1),
        "ideal_msg_s": ideal,
        "percent_of_ideal": round(100 * steady_throughput(marks, drain.messages) / ideal, 1),
        "sqs_requests_per_message": round(requests_after_setup(samples) / max(processed, 1), 3),
        "cpu_ms_per_message": round(1000 * cpu / max(processed - done_ready, 1), 3),
        "peak_rss_mb": round(rss, 1),
        "processed": int(processed),
        "lost": int(max(drain.messages - processed, 0)),
        "left_on_queue": left,
        "sqs_errors": int(failed_requests(samples)),
    }


def settle(endpoint: str, url: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while queue_count(endpoint, url) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def steady_throughput(marks: list[tuple[float, float]], messages: int) -> float:
    """Messages per second between 10% and 90% of the completions (0 if it never got there)."""
    first = next((t for t, done in marks if done >= messages * 0.1), None)
    last = next((t for t, done in marks if done >= messages * 0.9), None)
    if first is None or last is None or last <= first:
        return 0.0
    return messages * 0.8 / (last - first)


def measure(endpoint: str, profile: Profile, emit: Emit) -> None:
    """Each concurrency, Conveyor then the naive consumer; ``emit(bench, system, params, figures)``."""
    for concurrency in profile.processor_concurrency:
        messages = int(concurrency / profile.handler_seconds * profile.processor_seconds)
        for system in (CONVEYOR, NAIVE):
            drain = Drain(system, concurrency, messages, profile.handler_seconds)
            params = {"concurrency": concurrency, "messages": messages, "handler_s": profile.handler_seconds}
            emit("processor", system, params, run_drain(endpoint, drain))
    if profile.rss_run:
        drain = Drain(CONVEYOR, 1000, 3000, 1.0)
        params = {"concurrency": 1000, "messages": 3000, "handler_s": 1.0}
        emit("processor-rss", CONVEYOR, params, run_drain(endpoint, drain))
