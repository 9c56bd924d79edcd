"""Writer benchmark: N concurrent HTTP clients posting single messages to Conveyor's queue-writer,
to the naive FastAPI + boto3 endpoint (bench/baselines/naive_writer.py) and to the no-op ceiling
(bench/baselines/noop_writer.py), all three started at once and loaded in turn at each client count.

For each system and client count: accepted/s, p50/p99 latency, error answers, SQS requests per
accepted message (counted at the server's client), CPU ms per message of the server process
(/proc), and whether every accepted message is on the queue. For Conveyor also its share of the
ceiling: ``percent_of_noop`` (throughput) and ``cpu_efficiency`` = the no-op's CPU per request /
Conveyor's CPU per accepted message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from bench.load import closed_loop
from bench.profiles import CONVEYOR, NAIVE, NOOP, Profile
from bench.results import Emit
from bench.services import (
    Service,
    create_queues,
    free_port,
    module,
    percentile,
    queue_count,
    script,
    service,
    service_env,
    sum_samples,
)

REQUESTS = "conveyor_sqs_requests_total"
SYSTEMS = (CONVEYOR, NAIVE, NOOP)


@contextmanager
def writer(system: str, endpoint: str, queue: str, url: str) -> Iterator[Service]:
    port = free_port()
    env = service_env(endpoint, CONVEYOR_QUEUE_NAME=queue, CONVEYOR_QUEUE_URL=url, CONVEYOR_WRITER_PORT=str(port))
    uvicorn = ("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log")
    argv = {
        CONVEYOR: script("queue-writer"),
        NAIVE: module("uvicorn", "bench.baselines.naive_writer:app", *uvicorn),
        NOOP: module("uvicorn", "bench.baselines.noop_writer:app", *uvicorn),
    }[system]
    with service(argv, env, port, "/healthz") as running:
        yield running


def requests(server: Service, system: str) -> float:
    return 0.0 if system == NOOP else sum_samples(server.metrics(), REQUESTS)


def wait_on_queue(endpoint: str, url: str, expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (found := queue_count(endpoint, url)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def load_once(system: str, server: Service, clients: int, seconds: float) -> tuple[dict[str, Any], int]:
    requests_before, cpu_before = requests(server, system), server.cpu_seconds()
    tally = asyncio.run(closed_loop(server.url + "/messages", clients, seconds))
    cpu, calls = server.cpu_seconds() - cpu_before, requests(server, system) - requests_before
    figures = {
        "accepted_per_s": round(tally.ok / seconds, 1),
        "accepted": tally.ok,
        "error_answers": tally.failed,
        "errors_by_status": {str(k): v for k, v in sorted(tally.errors.items())},
        "p50_ms": percentile(tally.latencies_ms, 50),
        "p99_ms": percentile(tally.latencies_ms, 99),
        "sqs_requests_per_message": round(calls / tally.ok, 3) if tally.ok else None,
        "cpu_ms_per_message": round(1000 * cpu / tally.ok, 3) if tally.ok else None,
    }
    return figures, tally.ok


def add_ceiling(rows: dict[tuple[str, int], dict[str, Any]], clients: int) -> None:
    """Conveyor's share of the ceiling measured at the same client count in the same run."""
    ours, noop = rows[CONVEYOR, clients], rows[NOOP, clients]
    if noop["accepted_per_s"]:
        ours["percent_of_noop"] = round(100 * ours["accepted_per_s"] / noop["accepted_per_s"], 1)
    if ours["cpu_ms_per_message"] and noop["cpu_ms_per_message"]:
        ours["cpu_efficiency"] = round(noop["cpu_ms_per_message"] / ours["cpu_ms_per_message"], 3)


def measure(endpoint: str, profile: Profile, emit: Emit) -> None:
    queues = {system: f"bench-{uuid.uuid4().hex[:8]}" for system in SYSTEMS}
    urls = {system: create_queues(endpoint, queue) for system, queue in queues.items()}
    accepted = dict.fromkeys(SYSTEMS, 0)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    with ExitStack() as stack:
        servers = {s: stack.enter_context(writer(s, endpoint, queues[s], urls[s])) for s in SYSTEMS}
        for clients in profile.writer_clients:
            for system in SYSTEMS:
                figures, ok = load_once(system, servers[system], clients, profile.writer_seconds)
                accepted[system] += ok
                if system != NOOP:  # the no-op sends nothing: nothing to find on its queue
                    on_queue = wait_on_queue(endpoint, urls[system], accepted[system])
                    figures["lost"] = max(accepted[system] - on_queue, 0)
                rows[system, clients] = figures
            add_ceiling(rows, clients)
    for (system, clients), figures in rows.items():
        emit("writer", system, {"clients": clients, "seconds": profile.writer_seconds}, figures)
