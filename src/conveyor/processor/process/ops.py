"""The processor's ops HTTP port: /healthz, /readyz and /metrics (Prometheus).

The same app serves one engine process (its :class:`~conveyor.processor.engine.health.Health` and its own
registry) and the supervisor of several (their readiness together, and a registry that adds up
their metrics).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class Readiness(Protocol):
    @property
    def ready(self) -> bool: ...

    def describe(self) -> dict[str, object]: ...


def ops_app(health: Readiness, registry: CollectorRegistry) -> Starlette:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        return JSONResponse(health.describe(), status_code=200 if health.ready else 503)

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", prometheus)])


class OpsServer(uvicorn.Server):
    """uvicorn without its own signal handling: the processor's runner owns the signals."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def ops_server(health: Readiness, registry: CollectorRegistry) -> OpsServer:
    """Serves on a socket bound by the caller (``serve(sockets=[...])``)."""
    config = uvicorn.Config(
        ops_app(health, registry), log_level="warning", log_config=None, access_log=False, lifespan="off"
    )
    return OpsServer(config)
