"""Metadata every message of a request carries: request id, trace context, idempotency key."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Request

from conveyor.sqs import limits
from conveyor.writer.problems import EntryProblem

MAX_IDEMPOTENCY_KEY_CHARS = 255
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")  # fullmatch: no trailing newline
_OPTIONAL_WHITESPACE = " \t"  # what HTTP allows around a header value (RFC 9110), not newlines


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What travels with every message of one HTTP request."""

    request_id: str
    traceparent: str | None = None
    idempotency_key: str | None = None
    content_type: str = "application/json"


def request_meta(request: Request) -> RequestMeta:
    """Read the metadata headers; an invalid Idempotency-Key is refused, an invalid traceparent
    is dropped (as W3C trace context asks)."""
    traceparent = request.headers.get("traceparent", "").strip(_OPTIONAL_WHITESPACE).lower()
    key = request.headers.get("idempotency-key")
    if key is not None and (
        not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or limits.first_refused_char(key) is not None
    ):
        raise EntryProblem(
            422,
            "Invalid header",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} valid characters",
            field="Idempotency-Key",
        )
    return RequestMeta(
        request_id=request.state.request_id,
        traceparent=traceparent if _TRACEPARENT.fullmatch(traceparent) else None,
        idempotency_key=key,
        content_type=request.headers.get("content-type", "application/json").split(";")[0],
    )
