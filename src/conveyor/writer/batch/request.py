"""POST /messages/batch: validate each entry on its own, send the valid ones, report per entry.

With an idempotency store, the entries with a key (their own ``idempotency_key``, else the request's
``Idempotency-Key`` header with ``.<id>`` appended, see
:func:`~conveyor.writer.batch.entry.derived_key`) are begun together in one round trip before
anything is sent, and ended together after: a replayed entry is in ``successful`` with its first
``message_id`` and ``"replayed": true``; a key used for another message is a 422 entry, a key in
flight a 409 entry.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from fastapi.responses import JSONResponse, Response

from conveyor.idempotency import RequestState, StoredResponse
from conveyor.writer.api.problems import EntryProblem
from conveyor.writer.api.request_meta import RequestMeta
from conveyor.writer.api.schemas import BatchIn, BatchResult, BatchSuccess
from conveyor.writer.batch.entry import Entry, prepare_entry
from conveyor.writer.batch.group_order import is_group_stop, send_in_group_order
from conveyor.writer.replay.replay import Replay
from conveyor.writer.sending.sender import Sender
from conveyor.writer.state import WriterState


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
    keyed = state.replay is not None
    entries = [
        prepare_entry(
            m, meta, queue, keyed=keyed, tracer=state.tracing, contracts=state.contracts, offload=state.offload_rule
        )
        for m in batch.messages
    ]
    if state.replay is None:
        await _send(entries, state.sender, fifo=queue.is_fifo)
        return _answer(entries)
    await _begin(entries, state.replay)
    try:
        await _send(entries, state.sender, fifo=queue.is_fifo)
    finally:
        await _end(entries, state.replay)
    return _answer(entries)


async def _send(entries: list[Entry], sender: Sender, *, fifo: bool) -> None:
    if fifo:
        await send_in_group_order(entries, sender)
        return
    todo = [e for e in entries if e.pending and e.outgoing is not None]
    results = await asyncio.gather(*(sender.send(e.outgoing) for e in todo if e.outgoing), return_exceptions=True)
    for entry, result in zip(todo, results, strict=True):
        entry.settle(result)


async def _begin(entries: list[Entry], replay: Replay) -> None:
    keyed = [e for e in entries if e.pending and e.keyed is not None]
    if not keyed:
        return
    try:
        claims = await replay.begin([e.keyed for e in keyed if e.keyed])
    except EntryProblem as unavailable:
        for entry in keyed:
            entry.result = unavailable
        return
    for entry, claim in zip(keyed, claims, strict=True):
        if claim.state is RequestState.NEW:
            entry.begun, entry.token = True, claim.token
        elif claim.state is RequestState.REPLAY and claim.response is not None:
            entry.result, entry.replayed = json.loads(claim.response.body)["message_id"], True
        else:
            entry.result = replay.refusal(claim, "idempotency_key")


async def _end(entries: list[Entry], replay: Replay) -> None:
    begun = [e for e in entries if e.begun and e.keyed is not None]
    if not begun:
        return
    finished = [(e.keyed, _stored(e.result)) for e in begun if e.keyed and isinstance(e.result, str)]
    abandoned = [(e.keyed, e.token) for e in begun if e.keyed and not isinstance(e.result, str)]
    await replay.end(finished, abandoned)


def _stored(message_id: str) -> StoredResponse:
    return StoredResponse(202, json.dumps({"message_id": message_id}).encode(), "application/json")


def _answer(entries: list[Entry]) -> Response:
    successful = [
        BatchSuccess(id=e.id, message_id=e.result, replayed=e.replayed) for e in entries if isinstance(e.result, str)
    ]
    failed = [(e.id, e.result) for e in entries if isinstance(e.result, EntryProblem)]
    shared = _shared_server_problem(successful, [problem for _, problem in failed])
    if shared is not None:
        raise shared
    answer = BatchResult(successful=successful, failed=[p.to_batch_failure(entry_id) for entry_id, p in failed])
    return JSONResponse(answer.model_dump())


def _shared_server_problem(successful: list[BatchSuccess], failed: list[EntryProblem]) -> EntryProblem | None:
    """An error status for the whole request only when nothing was accepted for one shared
    server-side cause (SQS down, queue missing); entry-level refusals stay in ``failed``. On a FIFO
    queue, the entries not sent because an earlier one of their group failed share its cause."""
    causes = [p for p in failed if not is_group_stop(p)]
    if successful or not causes or len({(p.status, p.code, p.title) for p in causes}) != 1 or causes[0].status < 500:
        return None
    return causes[0]
