"""POST /messages/batch: validate each entry on its own, send the valid ones, report per entry."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import TYPE_CHECKING

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from conveyor.writer.outgoing import Outgoing, RequestMeta, build_outgoing
from conveyor.writer.problems import EntryProblem
from conveyor.writer.schemas import BatchFailure, BatchIn, BatchResult, BatchSuccess, Problem

if TYPE_CHECKING:
    from conveyor.writer.state import WriterState


def _entry_meta(meta: RequestMeta, entry_id: str) -> RequestMeta:
    """One request's Idempotency-Key made distinct per entry (else FIFO would drop all but one)."""
    if meta.idempotency_key is None:
        return meta
    return dataclasses.replace(meta, idempotency_key=f"{meta.idempotency_key}.{entry_id}")


def _check_unique_ids(batch: BatchIn) -> None:
    repeated = [i for i, n in Counter(e.id for e in batch.messages).items() if n > 1]
    if repeated:
        raise EntryProblem(
            422, "Invalid batch", f"entry ids must be unique; repeated: {', '.join(repeated)}",
            field="messages",
        )  # fmt: skip


async def send_batch(batch: BatchIn, state: WriterState, meta: RequestMeta) -> Response:
    _check_unique_ids(batch)
    queue = state.require_queue()
    failed: list[BatchFailure] = []
    valid: list[tuple[str, Outgoing]] = []
    for entry in batch.messages:
        try:
            valid.append((entry.id, build_outgoing(entry, _entry_meta(meta, entry.id), queue)))
        except EntryProblem as problem:
            failed.append(problem.to_batch_failure(entry.id))
    results = await asyncio.gather(*(state.send(o) for _, o in valid), return_exceptions=True)
    successful: list[BatchSuccess] = []
    for (entry_id, _), result in zip(valid, results, strict=True):
        if isinstance(result, EntryProblem):
            failed.append(result.to_batch_failure(entry_id))
        elif isinstance(result, BaseException):
            raise result
        else:
            successful.append(BatchSuccess(id=entry_id, message_id=result))
    shared = _shared_server_problem(successful, failed)
    if shared is not None:
        raise shared
    return JSONResponse(BatchResult(successful=successful, failed=failed).model_dump())


def _shared_server_problem(successful: list[BatchSuccess], failed: list[BatchFailure]) -> EntryProblem | None:
    """An error status for the whole request only when nothing was accepted for one shared
    server-side cause (SQS down, queue missing); entry-level refusals stay in ``failed``."""
    causes = {(f.status, f.code, f.title) for f in failed}
    if successful or len(causes) != 1:
        return None
    status, code, title = causes.pop()
    if status < 500:
        return None
    first = failed[0]
    return EntryProblem(status, title, first.detail, code=code, retryable=first.retryable)


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
