"""Why a request body was refused before any route ran, as a documented problem: the app-wide
mapping of FastAPI's validation errors, and of the bodies FastAPI could not parse.

FastAPI answers a JSON syntax error with a validation error (400 Malformed JSON, see
:func:`validation_problem`), a body that does not fit the schema with one too (422 naming each field),
and anything else its parser raises with a bare 400. Those are valid JSON Python will not parse, or
text that is not JSON at all; each gets a documented answer here (:func:`parse_problem`):

- an integer longer than Python converts (4300 digits, ``sys.get_int_max_str_digits()``: a guard
  against quadratic-time parsing) is a 422 naming the field, like any other value SQS-bound
  validation refuses;
- nesting deeper than the parser's recursion limit is a 422 naming ``body``;
- bytes that are not UTF-8 (or anything else) are a 400 Malformed JSON.

This runs only on that error path: the body is parsed a second time, to find the field.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastapi.exceptions import RequestValidationError

from conveyor.writer.api.schemas import Problem


def validation_problem(exc: RequestValidationError, request_id: str | None) -> Problem:
    """400 for JSON that does not parse, 422 naming each field that does not validate."""
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return Problem(
            title="Malformed JSON", status=400, detail="the request body is not valid JSON",
            request_id=request_id,
        )  # fmt: skip
    listed = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": str(e["msg"])} for e in errors]
    first = listed[0] if listed else {"field": "body", "message": "invalid"}
    return Problem(
        title="Invalid message",
        status=422,
        detail=f"{first['field']}: {first['message']}",
        request_id=request_id,
        field=first["field"],
        errors=listed,
    )


class _TooLong:
    """Stands in for an integer with more digits than Python converts."""


def _int_or_too_long(digits: str) -> int | _TooLong:
    if len(digits.lstrip("-")) > sys.get_int_max_str_digits():
        return _TooLong()
    return int(digits)


def parse_problem(body: bytes, request_id: str | None) -> Problem:
    """The problem for a body FastAPI's JSON parsing raised on."""
    try:
        parsed = json.loads(body, parse_int=_int_or_too_long)
    except RecursionError:
        return _invalid("body", "the JSON is nested too deeply to parse", request_id)
    except ValueError:  # JSON syntax, or not UTF-8
        parsed = _TooLong  # the class itself: no path leads to an instance
    path = _path_to_too_long(parsed)
    if path is None:
        return Problem(
            title="Malformed JSON", status=400, detail="the request body is not valid JSON in UTF-8",
            request_id=request_id,
        )  # fmt: skip
    limit = sys.get_int_max_str_digits()
    return _invalid(_field(path), f"integers may have at most {limit} digits", request_id)


def _path_to_too_long(value: Any) -> list[str | int] | None:
    """The path to the first too-long integer, depth first (iterative: the value may be deep)."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _TooLong):
            return path
        children: list[tuple[str | int, Any]] = []
        if isinstance(node, dict):
            children = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node))
        stack.extend((child, [*path, key]) for key, child in reversed(children))
    return None


def _field(path: list[str | int]) -> str:
    """The field as other 422s name it: a message body is opaque JSON, so the path stops at it."""
    if "body" in path:
        path = path[: path.index("body") + 1]
    return ".".join(str(p) for p in path) or "body"


def _invalid(field: str, message: str, request_id: str | None) -> Problem:
    return Problem(
        title="Invalid message", status=422, detail=f"{field}: {message}", request_id=request_id,
        field=field, errors=[{"field": field, "message": message}],
    )  # fmt: skip
