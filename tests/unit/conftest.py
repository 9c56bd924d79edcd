"""Unit tests: in-memory fakes only, no network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from conveyor.contracts import App
from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, as_client
from conveyor.tracing import NoTracing, Tracing
from conveyor.writer.app import create_app

QUEUE = "conveyor-messages"


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE)
    return sqs


@pytest.fixture(params=[True, False], ids=["fast-path", "route-only"])
def writer_settings(request: pytest.FixtureRequest) -> WriterSettings:
    """The writer's settings; every test of the HTTP contract runs with the fast path for the valid
    POST /messages (writer/http/fast_path.py) and without it: the answers must be the same."""
    return WriterSettings(queue_name=QUEUE, batch_linger_ms=5, send_retries=2, writer_fast_path=request.param)


@asynccontextmanager
async def running_writer(
    fake: InMemorySqs, settings: WriterSettings, tracer: NoTracing | Tracing | None = None, contracts: App | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The writer app over an in-memory SQS, with its lifespan running (``contracts``: the user's app)."""
    app = create_app(settings, client=as_client(fake), tracer=tracer, contracts=contracts)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            yield client


@pytest.fixture
async def api(fake: InMemorySqs, writer_settings: WriterSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_writer(fake, writer_settings) as client:
        yield client
