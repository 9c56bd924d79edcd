"""What Idempotency-Key replay costs the writer: the same load with and without the idempotency store.

    .venv/bin/python -m bench.scenarios.writer_idempotency [--clients 64] [--seconds 10] [--rounds 3]
                                                           [--stores none redis]

N concurrent HTTP clients post single messages, each with a new ``Idempotency-Key`` (so the message,
its attributes and the HTTP request are the same in every mode: only the store differs), against one
``queue-writer`` in front of LocalStack. Modes: ``none`` (no store: the key only travels as an
attribute), ``redis`` (a redis-server started for the run on a free port, no persistence), ``sqlite``
(a file in a temporary directory). The modes alternate for ``--rounds`` rounds, each mode on its own
writer process, so that a busy machine weighs on all of them alike; medians are printed last, with
each store's throughput as a share of ``none``'s. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
from harness.redis import RedisServer

from bench.services import REPO, create_queues, free_port, localstack, process_cpu_seconds, script, service, sum_samples
from conveyor.localstack import LocalStack

BODY = {"body": {"order": 1, "payload": "x" * 200}, "attributes": {"tenant": "bench"}}


async def load(url: str, clients: int, seconds: float) -> tuple[int, int, list[float]]:
    """(202s, other answers, latencies in ms): ``clients`` loops, each request with a new key."""
    latencies: list[float] = []
    ok = failed = 0
    run = uuid.uuid4().hex[:8]
    numbers = itertools.count()
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline:
                started = time.perf_counter()
                headers = {"Idempotency-Key": f"{run}-{next(numbers)}"}
                async with session.post(url, json=BODY, headers=headers) as response:
                    await response.read()
                    ok, failed = (ok + 1, failed) if response.status == 202 else (ok, failed + 1)
                latencies.append((time.perf_counter() - started) * 1000)

        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(client())
    return ok, failed, latencies


def percentile(values: list[float], p: int) -> float:
    return round(statistics.quantiles(values, n=100)[p - 1], 2) if len(values) > 1 else float("nan")


@contextmanager
def store(mode: str, directory: Path) -> Iterator[tuple[str | None, int | None]]:
    """The store's URL, and the pid of its server (Redis) to count its CPU."""
    if mode == "none":
        yield None, None
    elif mode == "sqlite":
        yield f"sqlite:///{directory / f'{uuid.uuid4().hex}.sqlite3'}", None
    else:
        server = RedisServer(directory).start()
        assert server.process is not None
        try:
            yield server.url, server.process.pid
        finally:
            server.stop()


def cpu_of(pid: int | None, *, tree: bool = False) -> float:
    return 0.0 if pid is None else process_cpu_seconds(pid, tree=tree)


def one_run(stack: LocalStack, name: str, mode: str, args: argparse.Namespace, directory: Path) -> dict[str, object]:
    port = free_port()
    endpoint = stack.endpoint
    with store(mode, directory) as (url, store_pid):
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "CONVEYOR_SQS_ENDPOINT_URL": endpoint,
            "CONVEYOR_QUEUE_NAME": name, "CONVEYOR_WRITER_PORT": str(port), "CONVEYOR_LOG_LEVEL": "warning",
        }  # fmt: skip
        if url is not None:
            env["CONVEYOR_IDEMPOTENCY_STORE"] = url
        with service(script("queue-writer"), env, port, "/readyz") as writer:
            before, cpu = writer.metrics(), writer.cpu_seconds()
            others = cpu_of(stack.process.pid, tree=True), cpu_of(store_pid)
            ok, failed, latencies = asyncio.run(load(f"http://127.0.0.1:{port}/messages", args.clients, args.seconds))
            after, cpu = writer.metrics(), writer.cpu_seconds() - cpu
            sqs_cpu, store_cpu = cpu_of(stack.process.pid, tree=True) - others[0], cpu_of(store_pid) - others[1]
    calls = sum_samples(after, "conveyor_sqs_requests_total") - sum_samples(before, "conveyor_sqs_requests_total")
    return {
        "store": mode,
        "clients": args.clients,
        "accepted_per_s": round(ok / args.seconds, 1),
        "not_accepted": failed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "sqs_requests_per_message": round(calls / ok, 3) if ok else None,
        "writer_cpu_ms_per_message": round(1000 * cpu / ok, 3) if ok else None,
        "localstack_cpu_ms_per_message": round(1000 * sqs_cpu / ok, 3) if ok else None,
        "redis_cpu_ms_per_message": round(1000 * store_cpu / ok, 3) if ok else None,
    }


def summary(runs: list[dict[str, object]], modes: list[str]) -> list[dict[str, object]]:
    medians = {
        mode: statistics.median(float(str(r["accepted_per_s"])) for r in runs if r["store"] == mode) for mode in modes
    }
    cpu = {
        mode: statistics.median(float(str(r["writer_cpu_ms_per_message"])) for r in runs if r["store"] == mode)
        for mode in modes
    }
    base = medians.get("none")
    return [
        {
            "store": mode,
            "median_accepted_per_s": medians[mode],
            "median_writer_cpu_ms_per_message": cpu[mode],
            "percent_of_no_store": round(100 * medians[mode] / base, 1) if base else None,
        }
        for mode in modes
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", nargs="+", default=["none", "redis"], choices=["none", "redis", "sqlite"])
    parser.add_argument("--gateway-server", default="twisted", choices=["twisted", "hypercorn"])
    args = parser.parse_args(argv)
    print(f"# LocalStack gateway server: {args.gateway_server}; writer: 1 uvicorn worker", flush=True)
    runs: list[dict[str, object]] = []
    with ExitStack() as stack:
        stack_ls = stack.enter_context(localstack(args.gateway_server))
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-bench-idem-")))
        name = f"bench-{uuid.uuid4().hex[:8]}"
        create_queues(stack_ls.endpoint, name)
        for _ in range(args.rounds):
            for mode in args.stores:
                runs.append(one_run(stack_ls, name, mode, args, directory))
                print(json.dumps(runs[-1]), flush=True)
    for line in summary(runs, args.stores):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
