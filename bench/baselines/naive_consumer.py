"""The naive consumer: what most tutorials write. One boto3 ``receive_message`` of 10, the batch
handled concurrently in a thread pool, then ``delete_message`` one by one, then poll again; for more
concurrency, more of these loops (``CONVEYOR_CONCURRENCY`` / 10 threads).

Configured like queue-processor: ``CONVEYOR_SQS_ENDPOINT_URL``, ``CONVEYOR_QUEUE_URL``,
``CONVEYOR_CONCURRENCY``, ``CONVEYOR_HANDLER`` (a plain function taking the body), and
``CONVEYOR_PROCESSOR_PORT`` for ``/metrics``. Runs until killed.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from prometheus_client import start_http_server

from bench.baselines.counting import SUCCEEDED, count_calls

QUEUE_URL = os.environ["CONVEYOR_QUEUE_URL"]
sqs = count_calls(boto3.client("sqs", endpoint_url=os.environ.get("CONVEYOR_SQS_ENDPOINT_URL")))


def load_handler(spec: str) -> Callable[[str], None]:
    module, name = spec.split(":")
    handler: Callable[[str], None] = getattr(importlib.import_module(module), name)
    return handler


HANDLER = load_handler(os.environ.get("CONVEYOR_HANDLER", "bench.handlers:sleep_sync"))


def handle(message: dict[str, Any]) -> bool:
    try:
        HANDLER(message["Body"])
    except Exception:  # noqa: BLE001 - a tutorial's consumer: a failed message comes back after its timeout
        return False
    return True


def consume() -> None:
    with ThreadPoolExecutor(max_workers=10) as pool:
        while True:
            response = sqs.receive_message(QueueUrl=QUEUE_URL, MaxNumberOfMessages=10, WaitTimeSeconds=20)
            messages = response.get("Messages", [])
            done = list(pool.map(handle, messages))
            for message, ok in zip(messages, done, strict=True):
                if ok:
                    sqs.delete_message(QueueUrl=QUEUE_URL, ReceiptHandle=message["ReceiptHandle"])
                    SUCCEEDED.inc()


def main() -> None:
    start_http_server(int(os.environ.get("CONVEYOR_PROCESSOR_PORT", "8001")), addr="127.0.0.1")
    loops = max(1, int(os.environ.get("CONVEYOR_CONCURRENCY", "10")) // 10)
    threads = [threading.Thread(target=consume, daemon=True) for _ in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
