"""The writer's FastAPI app, put together: its lifespan (:mod:`conveyor.writer.lifespan`), its routes,
error handlers and docs (:mod:`conveyor.writer.http`), and the edge middleware around them all."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI

from conveyor import tracing
from conveyor.contracts import App
from conveyor.loading import import_app
from conveyor.settings import WriterSettings
from conveyor.writer.http.docs import add_asyncapi, add_docs, openapi_with_problems
from conveyor.writer.http.edge import EdgeMiddleware, Routes
from conveyor.writer.http.error_handlers import add_error_handlers
from conveyor.writer.http.fast_path import FastPath
from conveyor.writer.http.routes import add_routes
from conveyor.writer.lifespan import writer_lifespan
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.state import WriterState

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.writer")


def create_app(
    settings: WriterSettings,
    client: SQSClient | None = None,
    tracer: tracing.NoTracing | tracing.Tracing | None = None,
    contracts: App | None = None,
    s3: S3Client | None = None,
) -> FastAPI:
    """Build the app. ``client`` and ``s3`` inject the SQS and S3 clients (tests); else they are made
    from settings. ``tracer`` is the app's tracing (tests), else the process's (``tracing.ACTIVE``);
    it is shut down (its buffered spans exported) when the app stops. ``contracts`` is the user's
    app of message types (else ``CONVEYOR_APP``'s, if set)."""
    if contracts is None and settings.app:
        contracts = import_app(settings.app)
    metrics = WriterMetrics()
    tracer = tracing.ACTIVE if tracer is None else tracer
    fast_path = FastPath() if settings.writer_fast_path else None

    def share(state: WriterState) -> None:  # the routes read it from the app, the fast path holds it
        app.state.writer = state
        if fast_path is not None:
            fast_path.state = state

    app = FastAPI(
        title="Conveyor queue-writer",
        version="0.1.0",
        description="Validates messages and writes them to an SQS queue.",
        lifespan=writer_lifespan(settings, client, metrics, tracer, share, contracts=contracts, s3=s3),
        telemetry={"tracing": False, "metrics": False, "logs": False},  # Conveyor's own spans (conveyor.tracing)
        docs_url=None,  # served by add_docs from packaged assets, not from a CDN
        redoc_url=None,
    )
    app.openapi = lambda: openapi_with_problems(app, contracts)  # type: ignore[method-assign]
    add_error_handlers(app)
    add_routes(app, metrics)
    add_asyncapi(app, settings, contracts)
    add_docs(app)
    app.add_middleware(
        EdgeMiddleware,
        routes=Routes.of(app),
        max_body=settings.max_request_bytes,
        metrics=metrics,
        tracing=tracer,
        fast_path=fast_path,
    )
    return app
