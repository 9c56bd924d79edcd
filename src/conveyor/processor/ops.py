"""The processor's ops HTTP port: /healthz, /readyz and /metrics (Prometheus)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor.processor.health import Health
from conveyor.processor.metrics import ProcessorMetrics


def ops_app(health: Health, metrics: ProcessorMetrics) -> Starlette:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        return JSONResponse(health.describe(), status_code=200 if health.ready else 503)

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", prometheus)])


class OpsServer(uvicorn.Server):
    """uvicorn without its own signal handling: the processor's runner owns the signals."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def ops_server(health: Health, metrics: ProcessorMetrics) -> OpsServer:
    """Serves on a socket bound by the caller (``serve(sockets=[...])``)."""
    config = uvicorn.Config(ops_app(health, metrics), log_level="warning", access_log=False, lifespan="off")
    return OpsServer(config)
