"""Large payloads through S3: 1, 5 and 32 MiB messages through Conveyor's writer and processor, the
bodies stored in LocalStack's S3 (``CONVEYOR_PAYLOAD_BUCKET``) and pointers sent to SQS.

    .venv/bin/python -m bench.run --only payloads                 (rows go to the results)
    .venv/bin/python -m bench.scenarios.payloads [--sizes 1 5 32 --messages 4 --clients 2] [--json FILE]

Each size gets a fresh queue and bucket and a fresh writer and processor (so each peak RSS is that
size's alone; ``CONVEYOR_MAX_REQUEST_BYTES`` at 40 MiB, the rest defaults). Before the load, the idle
services' RSS is read: the baseline. Then closed loops POST the size's messages (20 of 1 MiB and 10
of 5 MiB from two clients, 4 of 32 MiB from two, then 2 from one: what one such body costs), each
body ``{"seq": n, "blob": "xxx..."}`` of exactly the size in bytes, and the handler
(``bench.payload_handlers:record``) notes each message's length, whether it came from S3, and when
it started. Figures: the writer's throughput (MiB/s and msg/s of accepted
POSTs, first POST to last answer) and end-to-end (first POST to the last handler start); the peak
RSS (``VmHWM``) of the writer and of the processor, and above their baseline; per message, each
service's S3 calls (``conveyor_s3_requests_total``) and SQS calls (``conveyor_sqs_requests_total``,
set-up calls left out) and the bytes stored and fetched; what was lost, handled twice, or handled
without its payload; and the objects left in the bucket once the processor deleted them (0).

Not in the quick profile: a run takes about a minute (four pairs of services, 200 MiB through
LocalStack), and what CI needs of the feature is in the unit and LocalStack tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import boto3
from botocore.config import Config

from bench.load import Tally
from bench.profiles import CONVEYOR, FULL, Profile
from bench.results import Emit
from bench.scenarios.processor import requests_after_setup
from bench.services import (
    REPO,
    Service,
    create_queues,
    free_port,
    localstack,
    script,
    service,
    service_env,
    sum_samples,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client as SyncS3Client

MIB = 1024 * 1024
MAX_REQUEST_BYTES = 40 * MIB  # a 32 MiB body and its JSON envelope
HANDLED_TIMEOUT = 60.0
RECLAIM_TIMEOUT = 10.0  # the processor deletes handled payloads within its linger (0.2 s) and a DeleteObjects
S3_REQUESTS = "conveyor_s3_requests_total"
PAYLOADS = "conveyor_payloads_total"
PAYLOAD_BYTES = "conveyor_payload_bytes_total"


def s3(endpoint: str) -> SyncS3Client:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - LocalStack's dummy credentials
        config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip


def objects_in(client: SyncS3Client, bucket: str) -> int:
    return sum(page.get("KeyCount", 0) for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket))


def body_of(seq: int, size: int) -> bytes:
    """``{"seq":n,"blob":"xxx..."}`` of exactly ``size`` bytes, as the writer's compact JSON keeps it."""
    head = f'{{"body":{{"seq":{seq},"blob":"'.encode()
    tail = b'"}}'
    envelope = len(head) + len(tail) - len(b'{"body":') - len(b"}")  # what of it is the message body
    return head + b"x" * (size - envelope) + tail


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


@contextmanager
def pipeline(endpoint: str, bucket: str, record: Path) -> Iterator[tuple[Service, Service]]:
    """Writer and processor on a fresh queue, storing payloads in ``bucket``; yields (writer, processor)."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    url = create_queues(endpoint, queue)
    writer_port, processor_port = free_port(), free_port()
    env = service_env(
        endpoint, CONVEYOR_QUEUE_NAME=queue, CONVEYOR_QUEUE_URL=url, CONVEYOR_WRITER_PORT=str(writer_port),
        CONVEYOR_PROCESSOR_PORT=str(processor_port), CONVEYOR_HANDLER="bench.payload_handlers:record",
        CONVEYOR_BENCH_PAYLOAD_FILE=str(record), CONVEYOR_PAYLOAD_BUCKET=bucket,
        CONVEYOR_MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES),
        # This checkout's own code (a worktree's), before whichever the interpreter has installed.
        PYTHONPATH=os.pathsep.join((str(REPO / "src"), str(REPO))),
    )  # fmt: skip
    with ExitStack() as stack:
        processor = stack.enter_context(service(script("queue-processor"), env, processor_port, "/readyz"))
        yield stack.enter_context(service(script("queue-writer"), env, writer_port, "/readyz")), processor


async def post_all(url: str, bodies: Sequence[bytes], clients: int) -> tuple[Tally, set[int], float]:
    """``clients`` closed loops posting ``bodies`` in turn; the sequence numbers answered 2xx and when
    the last answer came (monotonic)."""
    tally, accepted, todo = Tally(), set[int](), iter(enumerate(bodies))
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=timeout) as session:

        async def client() -> None:
            for seq, body in todo:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                tally.note(status, started)
                if 200 <= status < 300:
                    accepted.add(seq)

        async with asyncio.TaskGroup() as group:
            for _ in range(clients):
                group.create_task(client())
    return tally, accepted, time.monotonic()


@dataclass(frozen=True)
class Handled:
    seq: int
    length: int
    offloaded: bool
    started: float


def handled(record: Path) -> list[Handled]:
    lines = record.read_text().splitlines() if record.exists() else []
    return [Handled(int(s), int(n), o == "1", float(t)) for s, n, o, t in (line.split() for line in lines)]


def wait_for(done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.1)


def run_size(endpoint: str, size_mib: int, messages: int, clients: int) -> dict[str, Any]:
    size = size_mib * MIB
    bucket = f"bench-payloads-{uuid.uuid4().hex[:8]}"
    store = s3(endpoint)
    store.create_bucket(Bucket=bucket)
    bodies = [body_of(seq, size) for seq in range(messages)]  # built before the clock starts
    with tempfile.TemporaryDirectory(prefix="conveyor-payloads-") as scratch:
        record = Path(scratch) / "handled.txt"
        with pipeline(endpoint, bucket, record) as (writer, processor):
            idle = {name: rss_mb(s.process.pid, "VmRSS") for name, s in (("writer", writer), ("processor", processor))}
            began_wall, began = time.time(), time.monotonic()
            tally, accepted, answered = asyncio.run(post_all(writer.url + "/messages", bodies, clients))
            wait_for(lambda: {h.seq for h in handled(record)} >= accepted, HANDLED_TIMEOUT)
            wait_for(lambda: objects_in(store, bucket) == 0, RECLAIM_TIMEOUT)
            written, processed = writer.metrics(), processor.metrics()
            peak = {name: rss_mb(s.process.pid, "VmHWM") for name, s in (("writer", writer), ("processor", processor))}
        calls = handled(record)
    left = objects_in(store, bucket)
    if left == 0:
        store.delete_bucket(Bucket=bucket)
    n = len(accepted)
    seen = [h for h in calls if h.seq in accepted]
    last_start = max((h.started for h in seen), default=began_wall)
    writer_seconds = answered - began

    def each(value: float) -> float | None:
        return round(value / n, 2) if n else None

    return {
        "posted": tally.ok + tally.failed,
        "accepted": n,
        "error_answers": tally.errors,
        "lost": len(accepted - {h.seq for h in seen}),
        "handled_twice": len(seen) - len({h.seq for h in seen}),
        "without_payload": sum(1 for h in seen if not h.offloaded or h.length != size),
        "writer_mib_s": round(n * size_mib / writer_seconds, 1),
        "writer_msg_s": round(n / writer_seconds, 2),
        "end_to_end_mib_s": round(n * size_mib / (last_start - began_wall), 1) if seen else None,
        "end_to_end_seconds": round(last_start - began_wall, 2),
        "writer_idle_rss_mb": idle["writer"],
        "writer_peak_rss_mb": peak["writer"],
        "writer_rss_over_idle_mb": round(peak["writer"] - idle["writer"], 1),
        "processor_idle_rss_mb": idle["processor"],
        "processor_peak_rss_mb": peak["processor"],
        "processor_rss_over_idle_mb": round(peak["processor"] - idle["processor"], 1),
        "writer_s3_requests_per_message": each(sum_samples(written, S3_REQUESTS)),
        "processor_s3_requests_per_message": each(sum_samples(processed, S3_REQUESTS)),
        "s3_requests": {
            "writer": {k.removeprefix(S3_REQUESTS): v for k, v in written.items() if k.startswith(S3_REQUESTS)},
            "processor": {k.removeprefix(S3_REQUESTS): v for k, v in processed.items() if k.startswith(S3_REQUESTS)},
        },
        "writer_sqs_requests_per_message": each(requests_after_setup(written)),
        "processor_sqs_requests_per_message": each(requests_after_setup(processed)),
        "stored": sum_samples(written, f'{PAYLOADS}{{event="stored"}}'),
        "fetched": sum_samples(processed, f'{PAYLOADS}{{event="fetched"}}'),
        "deleted": sum_samples(processed, f'{PAYLOADS}{{event="deleted"}}'),
        "missing_or_delete_failed": sum_samples(processed, f'{PAYLOADS}{{event="missing"}}')
        + sum_samples(processed, f'{PAYLOADS}{{event="delete_failed"}}'),
        "mib_stored_per_message": each(sum_samples(written, f'{PAYLOAD_BYTES}{{direction="stored"}}') / MIB),
        "mib_fetched_per_message": each(sum_samples(processed, f'{PAYLOAD_BYTES}{{direction="fetched"}}') / MIB),
        "objects_left": left,
    }


COLUMNS = (
    ("MiB", "size_mib"), ("clients", "clients"), ("msgs", "accepted"), ("writer MiB/s", "writer_mib_s"),
    ("writer msg/s", "writer_msg_s"), ("e2e MiB/s", "end_to_end_mib_s"), ("writer RSS idle/peak MB", "writer_rss"),
    ("processor RSS idle/peak MB", "processor_rss"), ("S3 calls/msg w/p", "s3"), ("SQS calls/msg w/p", "sqs"),
    ("MiB stored/fetched per msg", "mib"), ("lost", "lost"), ("objects left", "objects_left"),
)  # fmt: skip


def table(rows: Sequence[dict[str, Any]]) -> str:
    def cells(row: dict[str, Any]) -> dict[str, Any]:
        return {
            **row,
            "writer_rss": f"{row['writer_idle_rss_mb']} / {row['writer_peak_rss_mb']}",
            "processor_rss": f"{row['processor_idle_rss_mb']} / {row['processor_peak_rss_mb']}",
            "s3": f"{row['writer_s3_requests_per_message']} / {row['processor_s3_requests_per_message']}",
            "sqs": f"{row['writer_sqs_requests_per_message']} / {row['processor_sqs_requests_per_message']}",
            "mib": f"{row['mib_stored_per_message']} / {row['mib_fetched_per_message']}",
        }

    lines = ["| " + " | ".join(title for title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(cells(row)[key]) for _, key in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def measure(endpoint: str, profile: Profile, emit: Emit) -> None:
    for size_mib, messages, clients in profile.payload_points:
        params = {"size_mib": size_mib, "messages": messages, "clients": clients}
        emit("payloads", CONVEYOR, params, run_size(endpoint, size_mib, messages, clients))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", help="MiB (default: the docstring's points)")
    parser.add_argument("--messages", type=int, default=4, help="messages of each of --sizes")
    parser.add_argument("--clients", type=int, default=2, help="clients posting at once, with --sizes")
    parser.add_argument("--json", type=Path, help="also write the rows here, one JSON object per line")
    args = parser.parse_args(argv)
    points = [(size, args.messages, args.clients) for size in args.sizes] if args.sizes else FULL.payload_points
    rows = []
    with localstack("twisted") as stack:
        for size_mib, messages, clients in points:
            figures = run_size(stack.endpoint, size_mib, messages, clients)
            rows.append({"size_mib": size_mib, "clients": clients, **figures})
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
