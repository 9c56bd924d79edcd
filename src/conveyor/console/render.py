"""What every page shares: the console's objects (:class:`Console`), the templates, and the answer to
a refused request (an HTML page for a browser, RFC 9457 problem details for a script)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.templating import Jinja2Templates

from conveyor.console.actions import Actions
from conveyor.console.auth import SESSION_COOKIE, Guard, Refusal
from conveyor.console.desk import Desk
from conveyor.console.overview import Looker
from conveyor.console.settings import ConsoleSettings
from conveyor.dlq.command import ago

PROBLEM_JSON = "application/problem+json"
HERE = files("conveyor.console")
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))


TEMPLATES.env.filters["ago"] = lambda ms: f"{ago(ms)} ago"


class Console:
    """What the pages share: the settings, the guard, the DLQ's desk, the actions, the looker."""

    def __init__(self, settings: ConsoleSettings, desk: Desk, actions: Actions, looker: Looker) -> None:
        self.settings = settings
        self.guard = Guard(settings.console_token)
        self.desk = desk
        self.actions = actions
        self.looker = looker


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    console = console_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    signed_in = console.guard.session_ok(cookie)
    context |= {
        "writable": console.guard.writable,
        "signed_in": signed_in,
        "csrf": console.guard.csrf_of(cookie) if signed_in else "",
        "queue_name": console.settings.queue_name,
    }
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)


def refused(request: Request, refusal: Refusal) -> Response:
    """An HTML page for a browser, RFC 9457 problem details for anything else."""
    if wants_html(request):
        return page(request, "error.html", refusal.status, refusal=refusal)
    body = {"type": "about:blank", "title": refusal.title, "status": refusal.status, "detail": refusal.detail}
    headers = {"WWW-Authenticate": 'Bearer realm="conveyor-console"'} if refusal.status == 401 else None
    return JSONResponse(body, status_code=refusal.status, media_type=PROBLEM_JSON, headers=headers)
