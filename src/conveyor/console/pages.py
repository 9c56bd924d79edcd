"""The console's routes: the overview, the dead letters (list, one message, actions), the actions'
progress, sign-in and sign-out; ``/api/...`` answers the pages' scripts (and yours) in JSON."""

from __future__ import annotations

import time
from collections import Counter

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from conveyor.console.actions import BusyError, Kind
from conveyor.console.auth import BAD_TOKEN, READ_ONLY, SESSION_COOKIE, SESSION_SECONDS, Refusal, same_origin
from conveyor.console.forms import MAX_FORM_BYTES, Asked, FormError, FormTooLargeError, Wanted, one, parse_form
from conveyor.console.render import console_of, page, refused, wants_html
from conveyor.dlq.record import CONVEYOR_OWN, exported

log = structlog.get_logger("conveyor.console")
routes = APIRouter()
NOT_FOUND = Refusal(404, "not-found", "nothing here")


def _query(request: Request) -> dict[str, list[str]]:
    return {key: request.query_params.getlist(key) for key in request.query_params}


def _bad(request: Request, exc: FormError) -> Response:
    if isinstance(exc, FormTooLargeError):
        return refused(request, Refusal(413, "form-too-large", str(exc)))
    return refused(request, Refusal(400, "bad-request", str(exc)))


@routes.get("/")
async def overview(request: Request) -> Response:
    console = console_of(request)
    seen = await console.looker.overview()
    return page(request, "overview.html", overview=seen, actions=console.actions.recent()[:5])


@routes.get("/readyz")
async def ready() -> Response:
    """Up and serving (the console holds no state that could be unready: SQS trouble is on its pages)."""
    return JSONResponse({"ready": True})


@routes.get("/api/overview")
async def overview_json(request: Request) -> Response:
    return JSONResponse((await console_of(request).looker.overview()).as_json())


@routes.get("/dead-letters")
async def dead_letters(request: Request) -> Response:
    try:
        wanted = Wanted.of(_query(request))
    except FormError as exc:
        return _bad(request, exc)
    listing = await console_of(request).desk.listing()
    now_ms = int(time.time() * 1000)
    chosen = wanted.filter()
    shown = [m for m in listing.messages if chosen.matches(m, now_ms)]
    kinds = Counter(m.error_type for m in listing.messages if m.error_type)  # what the filter can choose
    return page(request, "dead_letters.html", listing=listing, shown=shown, kinds=sorted(kinds.items()),
                wanted=wanted, now_ms=now_ms)  # fmt: skip


@routes.get("/dead-letters/{message_id}")
async def dead_letter(request: Request, message_id: str) -> Response:
    listing = await console_of(request).desk.listing()
    found = listing.find(message_id)
    if found is None:
        detail = f"{message_id} is not among the dead letters read (redriven, deleted, or beyond the list's limit)"
        return refused(request, Refusal(404, "not-in-the-list", detail))
    attributes = {name: value for name, value in exported(found)["attributes"].items() if name not in CONVEYOR_OWN}
    return page(request, "dead_letter.html", message=found, attributes=attributes, now_ms=int(time.time() * 1000))


async def _form(request: Request) -> bytes:
    """The request's body, refused past :data:`MAX_FORM_BYTES` before it is all in memory."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise FormTooLargeError(f"the form is over {MAX_FORM_BYTES // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLargeError(f"the form is over {MAX_FORM_BYTES // 1024} KiB")
    return bytes(body)


def _who(request: Request) -> str:
    how = "bearer token" if request.headers.get("authorization", "").lower().startswith("bearer ") else "session"
    return f"{how} from {request.client.host if request.client else 'unknown'}"


async def _allowed(request: Request) -> tuple[dict[str, list[str]] | None, Response | None]:
    """The form, once the request may change something; else the refusal to answer."""
    try:
        fields = parse_form(await _form(request))
    except FormError as exc:
        return None, _bad(request, exc)
    console = console_of(request)
    refusal = console.guard.refusal(request.headers, request.cookies.get(SESSION_COOKIE), one(fields, "csrf") or None)
    if refusal is not None:
        log.warning("console_request_refused", path=request.url.path, reason=refusal.title,
                    client=request.client.host if request.client else None)  # fmt: skip
        return None, refused(request, refusal)
    return fields, None


@routes.post("/dead-letters/actions")
async def act(request: Request) -> Response:
    fields, refusal = await _allowed(request)
    if fields is None:
        return refusal or refused(request, NOT_FOUND)
    try:
        asked = Asked.of(fields)
    except FormError as exc:
        return _bad(request, exc)
    console = console_of(request)
    if not asked.confirmed:
        return await _confirm(request, asked)
    who = _who(request)
    kind: Kind = "redrive" if asked.kind == "redrive" else "delete"
    try:
        action = console.actions.start(kind, asked.chosen, asked.describe(), who)
    except BusyError as exc:
        return refused(request, Refusal(409, "action-running", str(exc)))
    where = f"/actions/{action.id}"
    if wants_html(request):
        return RedirectResponse(where, status_code=303)
    return JSONResponse(action.as_json(), status_code=202, headers={"Location": where})


async def _confirm(request: Request, asked: Asked) -> Response:
    """A browser is asked first (what matches now); a script says confirm=yes."""
    if not wants_html(request):
        return _bad(request, FormError("confirm: send confirm=yes to carry out the action"))
    listing = await console_of(request).desk.listing()
    now_ms = int(time.time() * 1000)
    matching = [m for m in listing.messages if asked.chosen.matches(m, now_ms)]
    return page(request, "confirm.html", asked=asked, matching=matching, listing=listing)


@routes.get("/actions/{action_id}")
async def action_page(request: Request, action_id: str) -> Response:
    action = console_of(request).actions.get(action_id)
    return refused(request, NOT_FOUND) if action is None else page(request, "action.html", action=action)


@routes.get("/api/actions/{action_id}")
async def action_json(request: Request, action_id: str) -> Response:
    action = console_of(request).actions.get(action_id)
    return refused(request, NOT_FOUND) if action is None else JSONResponse(action.as_json())


@routes.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return page(request, "sign_in.html", next=_next(request.query_params.get("next")), problem=None)


@routes.post("/sign-in")
async def sign_in(request: Request) -> Response:
    console = console_of(request)
    try:
        fields = parse_form(await _form(request))
    except FormError as exc:
        return _bad(request, exc)
    headers = request.headers
    if not console.guard.writable:
        return refused(request, READ_ONLY)
    if not same_origin(headers):
        return refused(request, Refusal(403, "cross-site-request", "sign in from the console's own page"))
    if not console.guard.token_is(one(fields, "token")):
        log.warning("console_sign_in_refused", client=request.client.host if request.client else None)
        return page(request, "sign_in.html", BAD_TOKEN.status, next=_next(one(fields, "next")), problem=BAD_TOKEN)
    response = RedirectResponse(_next(one(fields, "next")), status_code=303)
    secure = request.url.scheme == "https" or headers.get("x-forwarded-proto") == "https"
    response.set_cookie(SESSION_COOKIE, console.guard.new_session(), max_age=SESSION_SECONDS, httponly=True,
                        samesite="strict", secure=secure, path="/")  # fmt: skip
    log.info("console_signed_in", client=request.client.host if request.client else None)
    return response


@routes.post("/sign-out")
async def sign_out(request: Request) -> Response:
    if not same_origin(request.headers):  # no signing people out from elsewhere
        return refused(request, Refusal(403, "cross-site-request", "sign out from the console's own page"))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _next(value: str | None) -> str:
    """Where to go after signing in: a path of the console's own, never another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"
