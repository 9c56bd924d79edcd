"""POST /messages/batch: validate each entry on its own, send the valid ones, report per entry."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

from fastapi.responses import JSONResponse, Response

from conveyor.writer.outgoing import Outgoing, build_outgoing
from conveyor.writer.problems import EntryProblem
from conveyor.writer.request_meta import RequestMeta
from conveyor.writer.schemas import BatchIn, BatchResult, BatchSuccess
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
    failed: list[tuple[str, EntryProblem]] = []
    valid: list[tuple[str, Outgoing]] = []
    for entry in batch.messages:
        try:
            valid.append((entry.id, build_outgoing(entry, _entry_meta(meta, entry.id), queue)))
        except EntryProblem as problem:
            failed.append((entry.id, problem))
    results = await asyncio.gather(*(state.sender.send(o) for _, o in valid), return_exceptions=True)
    successful: list[BatchSuccess] = []
    for (entry_id, _), result in zip(valid, results, strict=True):
        if isinstance(result, EntryProblem):
            failed.append((entry_id, result))
        elif isinstance(result, BaseException):
            raise result
        else:
            successful.append(BatchSuccess(id=entry_id, message_id=result))
    shared = _shared_server_problem(successful, [problem for _, problem in failed])
    if shared is not None:
        raise shared
    answer = BatchResult(successful=successful, failed=[p.to_batch_failure(entry_id) for entry_id, p in failed])
    return JSONResponse(answer.model_dump())


def _shared_server_problem(successful: list[BatchSuccess], failed: list[EntryProblem]) -> EntryProblem | None:
    """An error status for the whole request only when nothing was accepted for one shared
    server-side cause (SQS down, queue missing); entry-level refusals stay in ``failed``."""
    causes = {(p.status, p.code, p.title) for p in failed}
    if successful or len(causes) != 1 or failed[0].status < 500:
        return None
    return failed[0]
