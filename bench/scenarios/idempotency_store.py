"""Idempotency store benchmark: how many handler keys per second each store claims and completes.

    .venv/bin/python -m bench.scenarios.idempotency_store [--stores sqlite redis] [--batches 2000] [--parallel 1 5]

The processor's pattern: per received batch of 10 messages, ONE ``claim`` of 10 keys and ONE
``complete`` of 10 keys. ``--parallel`` batches are in flight at once (5 is about the processor at
concurrency 50: five batches of ten). Also the writer's pattern: ``begin_request`` then
``finish_request`` per request, 64 requests at once. SQLite on a file in a temporary directory;
Redis is a redis-server started for the run on a free port (no persistence). The client CPU is this
process's (for SQLite it includes the database work; for Redis the server's CPU is not counted).
Prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from harness.redis import RedisServer

from conveyor.idempotency import IdempotencyStore, StoredResponse, open_store

RESPONSE = StoredResponse(
    202, b'{"message_id":"0f6c7e8a-2b1e-4c1e-9d1a-5c1f0e9a7b3d","request_id":"r"}', "application/json"
)


async def timed(call: Callable[[], Awaitable[object]], latencies: list[float]) -> None:
    start = time.perf_counter()
    await call()
    latencies.append(time.perf_counter() - start)


async def handler_run(store: IdempotencyStore, batches: int, parallel: int) -> dict[str, float]:
    latencies: list[float] = []
    owner = uuid.uuid4().hex
    queue: asyncio.Queue[int] = asyncio.Queue()
    for batch in range(batches):
        queue.put_nowait(batch)

    async def worker() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            keys = [f"{owner}-{batch}-{i}" for i in range(10)]
            await timed(partial(store.claim, keys, owner, 30), latencies)
            await timed(partial(store.complete, keys, owner, 86_400), latencies)

    start, cpu = time.perf_counter(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for _ in range(parallel):
            group.create_task(worker())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "keys_per_s": round(batches * 10 / elapsed),
        "batches_per_s": round(batches / elapsed),
        "client_cpu_us_per_batch": round(1e6 * cpu / batches),
        "round_trip_p50_ms": round(1000 * statistics.median(latencies), 3),
        "round_trip_p99_ms": round(1000 * statistics.quantiles(latencies, n=100)[98], 3),
    }


async def writer_run(store: IdempotencyStore, requests: int, parallel: int) -> dict[str, float]:
    prefix = uuid.uuid4().hex
    latencies: list[float] = []
    semaphore = asyncio.Semaphore(parallel)

    async def one(n: int) -> None:
        async with semaphore:
            key = f"client:{prefix}-{n}"
            await timed(lambda: store.begin_request(key, "fingerprint", 30), latencies)
            await timed(lambda: store.finish_request(key, "fingerprint", RESPONSE, 86_400), latencies)

    start, cpu = time.perf_counter(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for n in range(requests):
            group.create_task(one(n))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "requests_per_s": round(requests / elapsed),
        "client_cpu_us_per_request": round(1e6 * cpu / requests),
        "round_trip_p50_ms": round(1000 * statistics.median(latencies), 3),
        "round_trip_p99_ms": round(1000 * statistics.quantiles(latencies, n=100)[98], 3),
    }


async def bench_store(kind: str, url: str, batches: int, parallels: list[int]) -> None:
    async with open_store(url) as store:
        await handler_run(store, 20, 1)  # warm: file or connections open, scripts loaded
        for parallel in parallels:
            result = await handler_run(store, batches, parallel)
            print(json.dumps({"store": kind, "pattern": "claim+complete x10", "parallel": parallel, **result}))
        result = await writer_run(store, batches * 2, 64)
        print(json.dumps({"store": kind, "pattern": "begin+finish request", "parallel": 64, **result}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "redis"], choices=["sqlite", "redis"])
    parser.add_argument("--batches", type=int, default=2000, help="batches of 10 keys per run")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 5])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-idempotency-") as directory:
        if "sqlite" in args.stores:
            asyncio.run(bench_store("sqlite", f"sqlite:///{directory}/bench.sqlite3", args.batches, args.parallel))
        if "redis" in args.stores:
            server = RedisServer(Path(directory)).start()
            try:
                asyncio.run(bench_store("redis", server.url, args.batches, args.parallel))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
