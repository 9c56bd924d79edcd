"""Who may change anything: the one owner of the console's token, its sign-in sessions and its
cross-site request checks.

A state-changing request is allowed with ``Authorization: Bearer <token>`` (scripts: a browser never
sends that header across sites without a CORS preflight, which the console does not answer), or with
the session cookie the sign-in form sets (HttpOnly, SameSite=Strict) *and* the form's CSRF field, from
a page of the console's own origin. Sessions are signed with the token (HMAC-SHA256) and expire: a
new token ends every session. Without a token configured the console changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

SESSION_COOKIE = "conveyor_console_session"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not change anything: its HTTP status and one readable line."""

    status: int
    title: str
    detail: str


READ_ONLY = Refusal(403, "console-read-only", "the console is read-only: set CONVEYOR_CONSOLE_TOKEN to allow actions")
SIGN_IN = Refusal(401, "sign-in-required", "sign in with the console's token (or send Authorization: Bearer)")
BAD_TOKEN = Refusal(401, "wrong-token", "that is not the console's token")
CROSS_SITE = Refusal(403, "cross-site-request", "the request did not come from the console's own pages")
BAD_CSRF = Refusal(403, "csrf-token-mismatch", "the form is stale or forged: reload the page and try again")


class Guard:
    def __init__(self, token: SecretStr | None, *, clock: Callable[[], float] = time.time) -> None:
        self._key = token.get_secret_value().encode() if token is not None else None
        self._clock = clock

    @property
    def writable(self) -> bool:
        return self._key is not None

    def token_is(self, offered: str) -> bool:
        return self._key is not None and hmac.compare_digest(offered.encode(), self._key)

    def new_session(self) -> str:
        """``<issued>.<nonce>.<mac>``: nothing kept on the server, so every console process accepts it."""
        body = f"{int(self._clock())}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def session_ok(self, cookie: str | None) -> bool:
        if self._key is None or not cookie or cookie.count(".") != 2:
            return False
        body, _, mac = cookie.rpartition(".")
        issued = body.split(".", 1)[0]
        if not issued.isdigit() or not hmac.compare_digest(mac, self._mac(body)):
            return False
        return 0 <= self._clock() - int(issued) < SESSION_SECONDS

    def csrf_of(self, cookie: str | None) -> str:
        """The CSRF token of a session (bound to it: a token of another session does not pass)."""
        return self._mac(f"csrf:{cookie}") if self.session_ok(cookie) else ""

    def refusal(self, headers: Mapping[str, str], cookie: str | None, csrf: str | None) -> Refusal | None:
        """None when the request may change something; else why not. ``headers``: by lower-case names."""
        if self._key is None:
            return READ_ONLY
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return None if self.token_is(authorization[7:].strip()) else BAD_TOKEN
        if not self.session_ok(cookie):
            return SIGN_IN
        if not same_origin(headers):
            return CROSS_SITE
        if not csrf or not hmac.compare_digest(csrf, self.csrf_of(cookie)):
            return BAD_CSRF
        return None

    def _mac(self, text: str) -> str:
        return hmac.new(self._key or b"", text.encode(), hashlib.sha256).hexdigest()


def same_origin(headers: Mapping[str, str]) -> bool:
    """A browser's request from one of the console's own pages: ``Sec-Fetch-Site`` (every current
    browser sends it) says same-origin or none, and ``Origin``, when sent, names the host asked."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in {"same-origin", "none"}:
        return False
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == headers.get("host", "")
