"""The app-wide answers to what a route raises: every error is a problem document, never a trace.

An :class:`~conveyor.writer.api.problems.EntryProblem` is answered as it says (counted, with
``Retry-After`` when retrying helps); FastAPI's validation errors and the bodies its parser raised on
are explained by :mod:`conveyor.writer.http.parse_errors`; Starlette's own (404, 405) keep their
status; anything else is a 500 whose traceback is in the log.
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.writer.api.problems import EntryProblem, problem_response, unexpected_problem
from conveyor.writer.api.schemas import Problem
from conveyor.writer.http.parse_errors import parse_problem, validation_problem
from conveyor.writer.http.routes import writer_state

log = structlog.get_logger("conveyor.writer")


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EntryProblem)
    async def entry_problem(request: Request, exc: EntryProblem) -> Response:
        return writer_state(request).problem_response(exc, request.state.request_id)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(validation_problem(exc, request.state.request_id))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        raw_body = getattr(request.state, "raw_body", None)
        if exc.status_code == 400 and exc.__cause__ is not None and raw_body is not None:
            return problem_response(parse_problem(raw_body, request.state.request_id))  # FastAPI's parse error
        problem = Problem(
            title=str(exc.detail), status=exc.status_code, detail=str(exc.detail),
            request_id=request.state.request_id,
        )  # fmt: skip
        return problem_response(problem, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected_error", path=request.url.path)
        return problem_response(unexpected_problem(request.state.request_id))
