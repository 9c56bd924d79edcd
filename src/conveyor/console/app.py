"""The console's web app: its lifespan (one SQS client, one HTTP session for the metrics, the task
group of the actions) and its security headers. The pages are in :mod:`conveyor.console.pages`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import aiohttp
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from conveyor.console.actions import Actions
from conveyor.console.auth import CROSS_SITE, Refusal
from conveyor.console.desk import Desk
from conveyor.console.overview import Looker
from conveyor.console.pages import routes
from conveyor.console.render import HERE, Console, refused
from conveyor.console.settings import ConsoleSettings
from conveyor.sqs.client import sqs_client

log = structlog.get_logger("conveyor.console")

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
        if (refusal := _foreign(request)) is not None:
            response = refused(request, refusal)
        else:
            response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "public, max-age=300"
        return response

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)  # outermost: before anything

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return refused(request, Refusal(exc.status_code, _title(exc.status_code), str(exc.detail)))

    @app.exception_handler(Exception)
    async def our_error(request: Request, exc: Exception) -> Response:
        log.exception("console_error", path=request.url.path)
        return refused(request, Refusal(500, "console-error", f"an error of the console's own ({type(exc).__name__})"))

    app.include_router(routes)
    return app


def _foreign(request: Request) -> Refusal | None:
    """A request another site's page made (an image, a script, a fetch; ``Sec-Fetch-Site``): the
    console's pages read the DLQ, which a page elsewhere must not make it do. Following a link to
    the console (a navigation) is allowed; its assets are anyone's."""
    site = request.headers.get("sec-fetch-site")
    if site not in {"cross-site", "same-site"} or request.url.path.startswith("/static/"):
        return None
    if request.method == "GET" and request.headers.get("sec-fetch-mode") == "navigate":
        return None
    return CROSS_SITE


def _title(status: int) -> str:
    return {404: "not-found", 405: "method-not-allowed"}.get(status, f"http-{status}")
