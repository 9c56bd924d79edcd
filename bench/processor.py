"""Processor benchmark: preload N messages, drain them with a 0.1 s handler, compare with the ideal.

    .venv/bin/python -m bench.processor [--concurrency 10 50 100] [--seconds 20] [--rss]

For each concurrency: drain throughput (steady state, between the 10th and 90th percentile of
completions) against the ideal concurrency / 0.1 s, SQS requests per message (counted at the
processor's client), CPU seconds per message and peak RSS of the processor process. ``--rss`` adds
a run with 1,000 handlers in flight at once (1 s handler) and reports the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

from bench.common import REPO, create_queues, free_port, localstack, service, sqs, sum_samples


def preload(client, url: str, count: int) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"payload": "x" * 200})
    for start in range(0, count, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, count - start))]
        client.send_message_batch(QueueUrl=url, Entries=entries)


def run_once(endpoint: str, concurrency: int, messages: int, sleep: float) -> dict[str, float]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    url = create_queues(endpoint, name)
    preload(sqs(endpoint), url, messages)
    port = free_port()
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "CONVEYOR_SQS_ENDPOINT_URL": endpoint, "CONVEYOR_QUEUE_NAME": name,
        "CONVEYOR_HANDLER": "bench.handlers:sleep", "CONVEYOR_BENCH_SLEEP": str(sleep),
        "CONVEYOR_CONCURRENCY": str(concurrency), "CONVEYOR_PROCESSOR_PORT": str(port),
        "CONVEYOR_LOG_LEVEL": "warning", "CONVEYOR_SQS_MAX_POOL_CONNECTIONS": str(max(64, concurrency)),
    }  # fmt: skip
    marks: list[tuple[float, float]] = []
    with service("queue-processor", env, port, "/healthz") as processor:
        cpu_before = processor.cpu_seconds()
        while True:
            done = processor.metrics().get("conveyor_processor_succeeded_total", 0.0)
            marks.append((time.monotonic(), done))
            if done >= messages:
                break
            time.sleep(0.05)
        samples = processor.metrics()
        cpu = processor.cpu_seconds() - cpu_before
        rss = processor.peak_rss_mb()
    first = next(t for t, d in marks if d >= messages * 0.1)
    last = next(t for t, d in marks if d >= messages * 0.9)
    throughput = messages * 0.8 / (last - first)
    ideal = concurrency / sleep
    requests = sum_samples(samples, "conveyor_sqs_requests_total")
    setup = sum_samples(samples, 'conveyor_sqs_requests_total{operation="GetQueue')
    return {
        "concurrency": concurrency,
        "messages": messages,
        "throughput_msg_s": round(throughput, 1),
        "ideal_msg_s": ideal,
        "percent_of_ideal": round(100 * throughput / ideal, 1),
        "sqs_requests_per_message": round((requests - setup) / messages, 3),
        "cpu_ms_per_message": round(1000 * cpu / messages, 3),
        "peak_rss_mb": round(rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--seconds", type=float, default=20.0, help="about how long each drain should take")
    parser.add_argument("--sleep", type=float, default=0.1, help="handler time, seconds")
    parser.add_argument("--gateway-server", default="twisted", choices=["twisted", "hypercorn"])
    parser.add_argument("--rss", action="store_true", help="also measure RSS with 1,000 in flight")
    args = parser.parse_args()
    print(f"# LocalStack gateway server: {args.gateway_server}")
    with localstack(args.gateway_server) as stack:
        for concurrency in args.concurrency:
            messages = int(concurrency / args.sleep * args.seconds)
            print(json.dumps(run_once(stack.endpoint, concurrency, messages, args.sleep)), flush=True)
        if args.rss:
            print(json.dumps({"rss_run": True, **run_once(stack.endpoint, 1000, 3000, 1.0)}), flush=True)


if __name__ == "__main__":
    main()
