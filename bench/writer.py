"""Writer benchmark: N concurrent HTTP clients posting single messages against the real stack.

    .venv/bin/python -m bench.writer [--clients 1 16 64] [--seconds 10] [--workers 1]

For each client count: accepted requests/s, p50/p99 latency, SQS requests per accepted message
(counted at the writer's client), and in the same run the throughput of a no-op endpoint
(GET /healthz: same server, same middleware, no AWS call) as the HTTP ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid

import aiohttp

from bench.common import REPO, create_queues, free_port, localstack, process_cpu_seconds, service, sum_samples
from conveyor.localstack import LocalStack

BODY = {"body": {"order": 1, "payload": "x" * 200}, "attributes": {"tenant": "bench"}}


async def load(url: str, clients: int, seconds: float, post: bool) -> tuple[int, int, list[float]]:
    """(answered 2xx, other, latencies in ms) for ``clients`` loops over ``seconds``."""
    latencies: list[float] = []
    ok = failed = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline:
                started = time.perf_counter()
                request = session.post(url, json=BODY) if post else session.get(url)
                async with request as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        ok += 1
                    else:
                        failed += 1
                latencies.append((time.perf_counter() - started) * 1000)

        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(client())
    return ok, failed, latencies


def stack_cpu(stack: LocalStack) -> float:
    return process_cpu_seconds(stack.process.pid, tree=True)


def percentile(values: list[float], p: float) -> float:
    return round(statistics.quantiles(values, n=100)[int(p) - 1], 2) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--gateway-server", default="twisted", choices=["twisted", "hypercorn"])
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the writer")
    args = parser.parse_args()
    print(f"# LocalStack gateway server: {args.gateway_server}; writer: {args.workers} uvicorn worker(s)")
    with localstack(args.gateway_server) as stack:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        create_queues(stack.endpoint, name)
        port = free_port()
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "CONVEYOR_SQS_ENDPOINT_URL": stack.endpoint,
            "CONVEYOR_QUEUE_NAME": name, "CONVEYOR_WRITER_PORT": str(port), "CONVEYOR_LOG_LEVEL": "warning",
            "CONVEYOR_WRITER_WORKERS": str(args.workers),
        }  # fmt: skip
        with service("queue-writer", env, port, "/readyz") as writer:
            base = f"http://127.0.0.1:{port}"
            for clients in args.clients:
                before = writer.metrics()
                cpu_before = (writer.cpu_seconds(tree=True), stack_cpu(stack))
                ok, failed, latencies = asyncio.run(load(base + "/messages", clients, args.seconds, post=True))
                after = writer.metrics()
                writer_cpu, sqs_cpu = writer.cpu_seconds(tree=True) - cpu_before[0], stack_cpu(stack) - cpu_before[1]
                noop_ok, _, noop_latencies = asyncio.run(load(base + "/healthz", clients, args.seconds, post=False))
                calls = sum_samples(after, "conveyor_sqs_requests_total") - sum_samples(
                    before, "conveyor_sqs_requests_total"
                )
                print(json.dumps({
                    "clients": clients,
                    "accepted_per_s": round(ok / args.seconds, 1),
                    "not_accepted": failed,
                    "p50_ms": percentile(latencies, 50),
                    "p99_ms": percentile(latencies, 99),
                    "sqs_requests_per_message": round(calls / ok, 3) if ok else None,
                    "noop_per_s": round(noop_ok / args.seconds, 1),
                    "percent_of_noop": round(100 * ok / noop_ok, 1) if noop_ok else None,
                    "noop_p50_ms": percentile(noop_latencies, 50),
                    "writer_cpu_ms_per_message": round(1000 * writer_cpu / ok, 3) if ok else None,
                    "localstack_cpu_ms_per_message": round(1000 * sqs_cpu / ok, 3) if ok else None,
                }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
