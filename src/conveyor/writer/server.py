"""`queue-writer`: check the queue, then serve the app with uvicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from conveyor import metrics_dir
from conveyor.settings import WriterSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import Kind, SqsError, classify
from conveyor.sqs.queues import read_queue_config, resolve_queue_url

GRACEFUL_SHUTDOWN_SECONDS = 30
APP = "conveyor.writer.asgi:app"


async def preflight(settings: WriterSettings) -> None:
    """Fail at start-up, with one line, when the queue cannot be used at all."""
    async with sqs_client(settings) as client:
        try:
            await read_queue_config(client, await resolve_queue_url(client, settings))
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is Kind.RETRYABLE:
                return  # SQS may come back: serve and answer 503 meanwhile
            raise SqsError(failure) from exc


class WriterServer(uvicorn.Server):
    """uvicorn's server, minus one step: after a graceful stop on SIGTERM/SIGINT uvicorn raises the
    signal again, so the process dies of it (exit -15). The writer has handled it: it exits 0."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def serve(settings: WriterSettings) -> int:
    """Serve until SIGTERM/SIGINT: stop accepting, answer what is in flight (requests waiting for
    their batch are flushed when the app shuts down), exit 0."""
    asyncio.run(preflight(settings))
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.writer_host,
        "port": settings.writer_port,
        "workers": settings.writer_workers,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "lifespan": "on",
    }
    if settings.writer_workers > 1:  # uvicorn's supervisor starts the workers and handles signals
        with _shared_metrics():
            uvicorn.run(APP, **options)
    else:
        WriterServer(uvicorn.Config(APP, **options)).run()
    return 0


@contextmanager
def _shared_metrics() -> Iterator[None]:
    """One ``/metrics`` for all workers: each writes its samples to a directory this process owns
    (named in the environment the workers inherit) and removes at the end."""
    previous = os.environ.get(metrics_dir.ENV)
    with metrics_dir.owned_dir("conveyor-writer-metrics-") as path:
        os.environ[metrics_dir.ENV] = str(path)
        try:
            yield
        finally:
            if previous is None:
                del os.environ[metrics_dir.ENV]
            else:
                os.environ[metrics_dir.ENV] = previous
