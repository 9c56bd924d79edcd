"""The canary's wire format: the message the canary posts, the reply a processor sends back.

A canary is an ordinary JSON body posted through the public API (the writer needs no change)::

    {"conveyor_canary": {"v": 1, "id": "<32 hex>", "at": <unix ms>, "sig": "<64 hex>"}}

``sig`` is HMAC-SHA256(secret, ``conveyor-canary:v1:<id>:<at>``) in lowercase hex. A processor holding
the same secret treats the message as a canary only when everything is exactly so: one top-level key,
exactly these four fields, the types above, a signature that verifies (compared in constant time),
and ``at`` at most :data:`MAX_AGE_MS` in the past and :data:`MAX_AHEAD_MS` in the future. Anything
else, including a valid canary replayed later, is an ordinary message for the user's handler.

The reply goes to the canary queue, fixed by configuration (never read from the message)::

    {"conveyor_canary_reply": {"v": 2, "id": ..., "processor": ..., "message_id": ...,
                               "received_at": <unix ms>, "handled_at": <unix ms>, "sig": "<64 hex>"}}

signed with the compact JSON array (``json.dumps`` with ``separators=(",", ":")``, non-ASCII
escaped) ``["conveyor-canary-reply",2,"<id>","<processor>","<message_id>",<received_at>,<handled_at>]``,
so the canary believes only processors that hold the secret. Each text is quoted and escaped, so
no field can lend a piece to its neighbour: joined with ``:`` (version 1), processor
``worker-1:4242`` and message id ``m`` read as processor ``worker-1`` and message id ``4242:m``
under the same signature. A version 1 reply is not a reply any more. The canary's own signed text
needs no such care: its fields are 32 hex digits and an integer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, replace
from typing import Any

CANARY_KEY = "conveyor_canary"
REPLY_KEY = "conveyor_canary_reply"
VERSION = 1
REPLY_VERSION = 2  # the signed text became a JSON array
MAX_AGE_MS = 10 * 60 * 1000  # older: an ordinary message (a replay, or a canary that waited too long)
MAX_AHEAD_MS = 60 * 1000  # clocks differ a little between the canary's host and the processors'
MAX_BODY_CHARS = 1024  # a canary is about 160 characters, a reply under 600: longer bodies are not parsed
MAX_PROCESSOR_ID_CHARS = 128

_ID = re.compile(r"^[0-9a-f]{32}$")
_SIG = re.compile(r"^[0-9a-f]{64}$")
_CANARY_FIELDS = frozenset({"v", "id", "at", "sig"})
_REPLY_FIELDS = frozenset({"v", "id", "processor", "message_id", "received_at", "handled_at", "sig"})


@dataclass(frozen=True, slots=True)
class Canary:
    id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    processor: str
    message_id: str
    received_at_ms: int
    handled_at_ms: int


def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def sign(secret: bytes, canary_id: str, at_ms: int) -> str:
    return _mac(secret, f"conveyor-canary:v{VERSION}:{canary_id}:{at_ms}")


def canary_body(secret: bytes, canary: Canary) -> dict[str, Any]:
    """The JSON value to post as the message's ``body``."""
    fields = {"v": VERSION, "id": canary.id, "at": canary.at_ms, "sig": sign(secret, canary.id, canary.at_ms)}
    return {CANARY_KEY: fields}


def _fields(body: str, key: str, names: frozenset[str], version: int) -> dict[str, Any] | None:
    """The inner object of ``{"<key>": {...}}`` with exactly ``names`` and ``version``, or None."""
    if len(body) > MAX_BODY_CHARS or key not in body:  # cheap: most messages stop here
        return None
    try:
        outer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(outer, dict) or list(outer) != [key]:
        return None
    inner = outer[key]
    if not isinstance(inner, dict) or set(inner) != names or type(inner["v"]) is not int or inner["v"] != version:
        return None
    return inner


def _is_ms(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**53  # bool is not an int here


def recognise(body: str, secret: bytes | None, now_ms: int) -> Canary | None:
    """The canary in ``body`` if it is a valid, fresh canary signed with ``secret``; else None."""
    if not secret:
        return None
    fields = _fields(body, CANARY_KEY, _CANARY_FIELDS, VERSION)
    if fields is None:
        return None
    canary_id, at, sig = fields["id"], fields["at"], fields["sig"]
    if not (isinstance(canary_id, str) and _ID.match(canary_id) and _is_ms(at) and isinstance(sig, str)):
        return None
    if not _SIG.match(sig) or not hmac.compare_digest(sig, sign(secret, canary_id, at)):
        return None
    if not now_ms - MAX_AGE_MS <= at <= now_ms + MAX_AHEAD_MS:
        return None
    return Canary(canary_id, at)


def _reply_text(reply: Reply) -> str:
    # ASCII only (json.dumps's default): a lone surrogate a forged reply holds is escaped, not an
    # error when the text is encoded
    fields = ["conveyor-canary-reply", REPLY_VERSION, reply.id, reply.processor, reply.message_id]
    return json.dumps([*fields, reply.received_at_ms, reply.handled_at_ms], separators=(",", ":"))


def reply_body(secret: bytes, reply: Reply) -> str:
    """The canary queue message a processor sends for a canary it handled."""
    reply = replace(reply, processor=reply.processor[:MAX_PROCESSOR_ID_CHARS])
    fields = {
        "v": REPLY_VERSION,
        "id": reply.id,
        "processor": reply.processor,
        "message_id": reply.message_id,
        "received_at": reply.received_at_ms,
        "handled_at": reply.handled_at_ms,
        "sig": _mac(secret, _reply_text(reply)),
    }
    return json.dumps({REPLY_KEY: fields}, separators=(",", ":"))


def parse_reply(body: str, secret: bytes) -> Reply | None:
    """The reply in ``body`` if well formed and signed with ``secret``; else None."""
    fields = _fields(body, REPLY_KEY, _REPLY_FIELDS, REPLY_VERSION)
    if fields is None:
        return None
    texts = (fields["id"], fields["processor"], fields["message_id"], fields["sig"])
    if not all(isinstance(text, str) for text in texts):
        return None
    if not (_is_ms(fields["received_at"]) and _is_ms(fields["handled_at"])):
        return None
    reply = Reply(fields["id"], fields["processor"], fields["message_id"], fields["received_at"], fields["handled_at"])
    if not hmac.compare_digest(fields["sig"], _mac(secret, _reply_text(reply))):
        return None
    return reply
