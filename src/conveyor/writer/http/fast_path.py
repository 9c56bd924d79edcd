"""The hot route, ``POST /messages`` with a valid message, answered as plain ASGI inside the edge.

FastAPI's routing, dependency solving and response machinery cost more CPU per message than
everything the writer itself does (docs/benchmarks.md). For the one request that is nearly all of
the load, the edge does the same work directly: pydantic parses and validates the body from its JSON
(``MessageIn.model_validate_json``), :func:`~conveyor.writer.sending.outgoing.build_outgoing` applies SQS's
rules, the same :class:`~conveyor.writer.sending.sender.Sender` sends it, and the 202 is written from bytes.

Everything else goes to the FastAPI route unchanged, so that every answer other than this 202 is the
route's own, byte for byte: a body pydantic refuses, a message ``build_outgoing`` refuses, a request
with an ``Idempotency-Key`` (the replay path), a content type other than exactly
``application/json``, a header given twice, a writer not ready yet, tracing on (the route makes the
spans). Nothing has been sent when it hands over. Once the message is sent, its answer is given here,
as the route would give it (an SQS failure's problem, or a 500 for an error of ours).
"""

from __future__ import annotations

import re

import structlog
from starlette.responses import JSONResponse
from starlette.types import Message, Scope, Send

from conveyor.writer.api.problems import EntryProblem, problem_response, unexpected_problem
from conveyor.writer.api.request_meta import meta_from
from conveyor.writer.api.schemas import Accepted, MessageIn
from conveyor.writer.http.edge_request import EdgeRequest, with_request_id
from conveyor.writer.sending.outgoing import build_outgoing
from conveyor.writer.state import WriterState

log = structlog.get_logger("conveyor.writer")
METHOD, PATH = "POST", "/messages"
JSON = "application/json"
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]+")  # nothing JSON escapes: the 202's bytes can be written directly
_CONTENT_TYPE = (b"content-type", JSON.encode())


class FastPath:
    """Answers the valid ``POST /messages`` (see the module's doc); ``state`` is set while the app runs."""

    def __init__(self) -> None:
        self.state: WriterState | None = None

    def takes(self, scope: Scope, request: EdgeRequest) -> bool:
        """This request may be answered here, if its body turns out valid."""
        state = self.state
        headers = request.headers
        return (
            state is not None
            and state.queue is not None
            and not state.tracing.enabled
            and not request.repeated_headers
            and headers.get("content-type") == JSON
            and "idempotency-key" not in headers
            and scope["path"] == PATH
            and scope["method"] == METHOD
        )

    async def send_and_answer(self, scope: Scope, request: EdgeRequest, body: bytes, send: Send) -> bool:
        """Send the message and answer; False (nothing sent, nothing answered) for the route to do it."""
        state = self.state
        if state is None or state.queue is None:
            return False
        try:
            message = MessageIn.model_validate_json(body)
            meta = meta_from(request.headers, request.request_id)
            outgoing = build_outgoing(message, meta, state.queue, state.contracts, state.offload_rule)
        except Exception:  # noqa: BLE001 - whatever the reason, the route gives the answer (the same refusal)
            return False
        try:
            message_id = await state.sender.send(outgoing)
        except EntryProblem as problem:
            await state.problem_response(problem, request.request_id)(
                scope, _no_receive, with_request_id(send, request)
            )
            return True
        except Exception:  # an error of ours: what the app's last-resort handler answers
            log.exception("unexpected_error", path=PATH)
            response = problem_response(unexpected_problem(request.request_id))
            await response(scope, _no_receive, with_request_id(send, request))
            return True
        await _accepted(send, request, message_id)
        return True


async def _accepted(send: Send, request: EdgeRequest, message_id: str) -> None:
    """The route's 202, byte for byte: Starlette's JSONResponse of :class:`Accepted`."""
    request_id = request.request_id
    if _PLAIN_ID.fullmatch(message_id):
        payload = f'{{"message_id":"{message_id}","request_id":"{request_id}"}}'.encode()
    else:  # not seen from SQS, whose ids are UUIDs: Starlette's own rendering
        accepted = Accepted(message_id=message_id, request_id=request_id).model_dump()
        await JSONResponse(accepted, status_code=202)({"type": "http"}, _no_receive, with_request_id(send, request))
        return
    request.status = 202
    headers = [(b"content-length", b"%d" % len(payload)), _CONTENT_TYPE, (b"x-request-id", request_id.encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _no_receive() -> Message:
    raise RuntimeError("the fast path's answers do not read the request")
