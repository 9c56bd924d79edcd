"""Every error the writer returns, as RFC 9457 problem details. Never a stack trace."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from conveyor.sqs.errors import Kind, SqsFailure
from conveyor.writer.api.schemas import BatchFailure, Problem

PROBLEM_JSON = "application/problem+json"


class EntryProblem(Exception):  # noqa: N818 - a problem document, raised where it is found
    """Why a message cannot be accepted: an HTTP status, a title, a detail naming the field, and
    for SQS failures the SQS code; whether retrying can help (answered with ``Retry-After``)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after: int | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after  # seconds for the Retry-After header, when not the writer's default
        self.errors = errors  # every failing field of a typed body (field, message)

    def to_problem(self, request_id: str | None) -> Problem:
        return Problem(
            title=self.title,
            status=self.status,
            detail=self.detail,
            request_id=request_id,
            code=self.code,
            retryable=self.retryable if self.code else None,
            field=self.field,
            errors=self.errors,
        )

    def to_batch_failure(self, entry_id: str) -> BatchFailure:
        return BatchFailure(
            id=entry_id,
            status=self.status,
            title=self.title,
            detail=self.detail,
            code=self.code,
            retryable=self.retryable,
            field=self.field if self.errors else None,
            errors=self.errors,
        )


def invalid_message(field: str, detail: str) -> EntryProblem:
    """A message refused for one of its fields: 422 naming it."""
    return EntryProblem(422, "Invalid message", f"{field}: {detail}", field=field)


def from_sqs(failure: SqsFailure) -> EntryProblem:
    """Map a classified SQS failure to what the client is told: the SQS code and a generic sentence
    per cause. SQS's own text is never passed on (it can name key ARNs and account ids): it is in
    the writer's log."""
    summary = failure.summary or "SQS refused the request"
    if failure.kind is Kind.RETRYABLE:
        return EntryProblem(
            503, "SQS unavailable", f"SQS did not take the message: {summary}; retry later.",
            code=failure.code, retryable=True,
        )  # fmt: skip
    if failure.kind is Kind.FATAL:
        return EntryProblem(
            500, "Queue unusable", f"{summary}; the operator must act (the writer's log has SQS's answer).",
            code=failure.code,
        )  # fmt: skip
    return EntryProblem(422, "Message refused by SQS", f"{summary} ({failure.code}).", code=failure.code)


def unexpected_problem(request_id: str | None) -> Problem:
    """The answer to an error of the writer's own (its log has the traceback)."""
    return Problem(
        title="Internal error", status=500, detail="an unexpected error; see the writer's log", request_id=request_id
    )


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )
