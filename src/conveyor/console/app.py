"""The console's web app: its lifespan (one SQS client, one HTTP session for the metrics, the task
group of the actions) and its security headers. The pages are in :mod:`conveyor.console.pages`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import aiohttp
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from conveyor.console.actions import Actions
from conveyor.console.desk import Desk
from conveyor.console.overview import Looker
from conveyor.console.pages import routes
from conveyor.console.render import HERE, Console
from conveyor.console.settings import ConsoleSettings
from conveyor.sqs.client import sqs_client

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

SECURITY_HEADERS = {
    # no inline script or style, nothing from elsewhere: the console serves its own assets
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def create_console_app(settings: ConsoleSettings, client: SQSClient | None = None) -> FastAPI:
    """The app; ``client`` injected (tests), else one made for the app's life."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            sqs = client if client is not None else await stack.enter_async_context(sqs_client(settings))
            session = await stack.enter_async_context(aiohttp.ClientSession())
            desk = Desk(sqs, settings, settings.console_list_limit)
            actions = await stack.enter_async_context(Actions(desk))
            app.state.console = Console(settings, desk, actions, Looker(sqs, session, settings, settings.metrics_urls))
            yield

    app = FastAPI(title="Conveyor console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "public, max-age=300"
        return response

    app.include_router(routes)
    return app
