"""`queue-writer`: serve the app with uvicorn (the app reads the queue at start-up)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from conveyor import metrics_dir
from conveyor.serving import GracefulServer
from conveyor.settings import WriterSettings

# The writer must have drained (stopped accepting, answered what is in flight) well inside the usual
# 30 s stop timeout of Kubernetes and ECS: 20 s, the processor's default grace too, so that the
# deploy files give both services the same termination grace.
GRACEFUL_SHUTDOWN_SECONDS = 20
APP = "conveyor.writer.asgi:app"
EXIT_STARTUP_FAILED = 1  # the queue cannot be used (the app said why in one line), or the port is taken


class WriterServer(GracefulServer):
    """The writer exits 0 after a graceful stop (see :class:`~conveyor.serving.GracefulServer`)."""


def serve(settings: WriterSettings) -> int:
    """Serve until SIGTERM/SIGINT: stop accepting, answer what is in flight (requests waiting for
    their batch are flushed when the app shuts down), exit 0. The app reads the queue at start-up
    (see writer/startup.py): unusable, the process exits 1; unreachable, it serves unready."""
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.writer_host,
        "port": settings.writer_port,
        "workers": settings.writer_workers,
        "log_level": "warning",
        "log_config": None,  # uvicorn's own lines go through the root logger: Conveyor's format, not plain text
        "access_log": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "lifespan": "on",
    }
    config = uvicorn.Config(APP, **options)
    try:
        if settings.writer_workers > 1:
            with _shared_metrics():
                return _supervise(config)
        WriterServer(config).run()
    except SystemExit as exc:
        if exc.code == STARTUP_FAILURE:
            return EXIT_STARTUP_FAILED
        raise
    return 0


def _supervise(config: uvicorn.Config) -> int:
    """uvicorn.run's multi-worker path, which returns 0 even when a worker could not start: uvicorn
    stops every worker when one fails to start; that is an exit status here."""
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    logging.getLogger("uvicorn.error").addFilter(_drop_worker_failed)
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        return EXIT_STARTUP_FAILED
    return 0


def _drop_worker_failed(record: logging.LogRecord) -> bool:
    """The worker said why in one line; uvicorn's own line about it adds nothing."""
    return "failed to start, stopping the parent process" not in record.getMessage()


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
