"""One HTTP request as the writer's edge sees it, shared by the edge and the fast path: what was asked
(headers, request id, route label) and the status of the answer, for the metrics and the span."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Message, Send

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.encode()


@dataclass(slots=True)
class EdgeRequest:
    """A request's headers (lower-case names; a repeated header's last value), its request id, its
    route label, and the status of its answer (500 until one is sent)."""

    headers: dict[str, str]
    request_id: str
    route: str
    status: int = 500
    repeated_headers: bool = False  # some header name came more than once


def with_request_id(send: Send, request: EdgeRequest) -> Send:
    """``send``, with the request id in the answer's headers (replacing any), noting the status."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            request.status = message["status"]
            headers = [h for h in message.get("headers", []) if h[0] != _REQUEST_ID_HEADER]
            headers.append((_REQUEST_ID_HEADER, request.request_id.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
