"""Metadata every message of a request carries: request id, trace context, idempotency key (in its
client's scope)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request

from conveyor.sqs import limits
from conveyor.writer.api.problems import EntryProblem
from conveyor.writer.api.schemas import MAX_IDEMPOTENCY_KEY_CHARS

CLIENT_HEADER = "x-conveyor-client"  # the API client's identity, set by the gateway (docs/idempotency.md)
_CLIENT = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # fullmatch; never "/", the scope's separator
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")  # fullmatch: no trailing newline
_OPTIONAL_WHITESPACE = " \t"  # what HTTP allows around a header value (RFC 9110), not newlines


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What travels with every message of one HTTP request."""

    request_id: str
    traceparent: str | None = None
    key: str | None = None  # the caller's own idempotency key, as given (see ``idempotency_key``)
    content_type: str = "application/json"
    client: str | None = None  # the X-Conveyor-Client header

    @property
    def idempotency_key(self) -> str | None:
        """The key in its client's scope (:func:`scoped_key`): what the store remembers and the
        ``conveyor.idempotency_key`` attribute."""
        return None if self.key is None else scoped_key(self.client, self.key)


def scoped_key(client: str | None, key: str) -> str:
    """An idempotency key in its client's scope, so that two API clients' keys never collide: the
    key the store remembers and the ``conveyor.idempotency_key`` attribute. Without a client, the
    scope is the anonymous one, the empty name ("/<key>"), which no client can have; a client's
    name never holds "/", so the scope is unambiguous."""
    return f"{client or ''}/{key}"


def is_valid_idempotency_key(key: str) -> bool:
    """1 to 255 characters, each one SQS allows in an attribute value."""
    return bool(key) and len(key) <= MAX_IDEMPOTENCY_KEY_CHARS and limits.first_refused_char(key) is None


def valid_traceparent(header: str) -> str | None:
    """The caller's W3C ``traceparent`` header when it is valid (else None: dropped, as W3C trace
    context asks)."""
    traceparent = header.strip(_OPTIONAL_WHITESPACE).lower()
    return traceparent if _TRACEPARENT.fullmatch(traceparent) else None


def request_meta(request: Request) -> RequestMeta:
    """Read the metadata headers; an invalid Idempotency-Key or X-Conveyor-Client is refused, an
    invalid traceparent is dropped (as W3C trace context asks)."""
    return meta_from(request.headers, request.state.request_id)


def meta_from(headers: Mapping[str, str], request_id: str) -> RequestMeta:
    """:func:`request_meta` from the headers (lower-case names) and the request id."""
    client = headers.get(CLIENT_HEADER)
    if client is not None and not _CLIENT.fullmatch(client):
        raise EntryProblem(
            422, "Invalid header", "X-Conveyor-Client must be 1 to 128 letters, digits or . _ : @ -",
            field="X-Conveyor-Client",
        )  # fmt: skip
    key = headers.get("idempotency-key")
    if key is not None and not is_valid_idempotency_key(key):
        raise EntryProblem(
            422, "Invalid header", f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} valid characters",
            field="Idempotency-Key",
        )  # fmt: skip
    return RequestMeta(
        request_id=request_id,
        traceparent=valid_traceparent(headers.get("traceparent", "")),
        key=key,
        content_type=headers.get("content-type", "application/json").split(";")[0],
        client=client,
    )
