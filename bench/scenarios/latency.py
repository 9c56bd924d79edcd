"""Latency benchmark: POST -> handler start at a steady rate (200 msg/s), through Conveyor's writer
and processor, and through the naive writer and consumer.

The load generator puts ``seq`` and ``posted_at`` (wall clock, just before the POST) in each body;
the handler (``bench.handlers:record`` / ``record_sync``) notes its own start time first thing. One
machine, one clock. Figures: p50/p90/p99/max of the first start of each accepted message, the
distribution as percentiles, and what was lost (accepted, never started) or started twice.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.load import steady
from bench.profiles import CONVEYOR, NAIVE, Profile
from bench.results import Emit
from bench.scenarios.processor import requests_after_setup
from bench.services import Service, create_queues, free_port, module, percentile, script, service, service_env

DISTRIBUTION = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9)
CONCURRENCY = 50
SETTLE_SECONDS = 0.5  # longer than the processor's delete linger (20 ms) and a DeleteMessageBatch


@contextmanager
def pipeline(system: str, endpoint: str, record: Path, **extra: str) -> Iterator[tuple[Service, Service]]:
    """Writer and processor of ``system`` on a fresh queue (``extra``: more environment for both);
    yields (writer, processor)."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    url = create_queues(endpoint, queue)
    writer_port, processor_port = free_port(), free_port()
    env = service_env(
        endpoint, CONVEYOR_QUEUE_NAME=queue, CONVEYOR_QUEUE_URL=url, CONVEYOR_WRITER_PORT=str(writer_port),
        CONVEYOR_PROCESSOR_PORT=str(processor_port), CONVEYOR_CONCURRENCY=str(CONCURRENCY),
        CONVEYOR_BENCH_LATENCY_FILE=str(record), **extra,
    )  # fmt: skip
    uvicorn = ("--host", "127.0.0.1", "--port", str(writer_port), "--log-level", "warning", "--no-access-log")
    if system == CONVEYOR:
        writer_argv, processor_argv = script("queue-writer"), script("queue-processor")
        env["CONVEYOR_HANDLER"] = "bench.handlers:record"
    else:
        writer_argv = module("uvicorn", "bench.baselines.naive_writer:app", *uvicorn)
        processor_argv = module("bench.baselines.naive_consumer")
        env["CONVEYOR_HANDLER"] = "bench.handlers:record_sync"
    with ExitStack() as stack:
        processor = stack.enter_context(service(processor_argv, env, processor_port, "/metrics"))
        yield stack.enter_context(service(writer_argv, env, writer_port, "/healthz")), processor


def starts(record: Path) -> tuple[dict[int, float], int]:
    """The first start latency (ms) of each message, and how many starts were repeats."""
    first: dict[int, float] = {}
    repeats = 0
    for line in record.read_text().splitlines() if record.exists() else []:
        seq, posted, started = line.split()
        if int(seq) in first:
            repeats += 1
        else:
            first[int(seq)] = (float(started) - float(posted)) * 1000
    return first, repeats


def wait_started(record: Path, accepted: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not accepted <= starts(record)[0].keys() and time.monotonic() < deadline:
        time.sleep(0.1)


def run_once(system: str, endpoint: str, profile: Profile) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="conveyor-latency-") as scratch:
        record = Path(scratch) / "starts.txt"
        with pipeline(system, endpoint, record) as (writer, processor):

            def body(seq: int) -> dict[str, Any]:
                return {"body": {"seq": seq, "posted_at": time.time(), "payload": "x" * 200}}

            began = time.monotonic()
            tally, accepted = asyncio.run(
                steady(writer.url + "/messages", profile.latency_rate, profile.latency_seconds, body)
            )
            elapsed = time.monotonic() - began
            wait_started(record, accepted, timeout=30)
            time.sleep(SETTLE_SECONDS)  # the last deletes are coalesced: counted once they are made
            writer_calls, processor_calls = (requests_after_setup(server.metrics()) for server in (writer, processor))
        first, repeats = starts(record)
    latencies = [ms for seq, ms in first.items() if seq in accepted]
    return {
        "posted": tally.ok + tally.failed,
        "posted_per_s": round((tally.ok + tally.failed) / elapsed, 1),
        "accepted": len(accepted),
        "error_answers": tally.failed,
        "lost": len(accepted - first.keys()),
        "started_twice": repeats,
        "sqs_requests_per_message": per_message(writer_calls + processor_calls, accepted),
        "writer_sqs_requests_per_message": per_message(writer_calls, accepted),
        "processor_sqs_requests_per_message": per_message(processor_calls, accepted),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": round(max(latencies), 2) if latencies else None,
        "distribution_ms": {str(p): percentile(latencies, p) for p in DISTRIBUTION},
        "post_p50_ms": percentile(tally.latencies_ms, 50),
    }


def per_message(calls: float, accepted: set[int]) -> float | None:
    return round(calls / len(accepted), 3) if accepted else None


def measure(endpoint: str, profile: Profile, emit: Emit) -> None:
    params = {"rate_per_s": profile.latency_rate, "seconds": profile.latency_seconds, "concurrency": CONCURRENCY}
    for system in (CONVEYOR, NAIVE):
        emit("latency", system, params, run_once(system, endpoint, profile))
