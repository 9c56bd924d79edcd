"""One SQS batch call with per-entry results, shared by every batch operation.

SQS answers HTTP 200 even when entries fail, so ``Failed`` is always read: entries that failed for a
retryable reason (throttling, server side) are sent again, alone, up to ``retries`` times with
backoff; the others get their classified error. A whole-call failure is not retried here (botocore's
retry policy already did), but one that may come from a single entry or from the batch's make-up
(``SqsFailure.split``: a content code, a batch-shape code, an unknown 4xx) is answered by sending
each entry again alone, so that one bad entry never fails its neighbours.

Each entry's result is handed to ``on_result`` the moment it is known: an entry SQS took is answered
while the entries that failed wait for their resend.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from conveyor.sqs.errors import SERVER_ERROR, SQS_ERRORS, Kind, SqsError, SqsFailure, classify, entry_failure

type EntryResult = Mapping[str, Any] | SqsError  # the entry's item from ``Successful``, or its error
type BatchCall = Callable[[list[Any]], Awaitable[Mapping[str, Any]]]
type OnResult = Callable[[int, EntryResult], None]

RETRY_BASE_SECONDS = 0.05
MISSING = SqsFailure("MissingResult", "SQS reported neither success nor failure", Kind.RETRYABLE, SERVER_ERROR.summary)


async def call_batch(
    call: BatchCall, entries: Sequence[Mapping[str, Any]], retries: int, on_result: OnResult | None = None
) -> list[EntryResult]:
    """Run ``call`` on ``entries`` (each without ``Id``: ids are assigned here); results in order.

    ``on_result(index, result)`` is called once per entry, as soon as that entry's result is known."""
    attempt = _Attempts(call, entries, on_result)
    todo = list(range(len(entries)))
    for number in range(retries + 1):
        todo = await attempt.run(todo, last=number == retries)
        if not todo:
            break
        await asyncio.sleep(RETRY_BASE_SECONDS * 2**number * (0.5 + random.random()))
    for index in todo:
        attempt.settle(index, SqsError(MISSING))
    return [attempt.results[i] for i in range(len(entries))]


class _Attempts:
    """The calls for one batch: each settles the entries it learnt about, and says which to resend."""

    def __init__(self, call: BatchCall, entries: Sequence[Mapping[str, Any]], on_result: OnResult | None) -> None:
        self._call = call
        self._entries = entries
        self._on_result = on_result
        self.results: dict[int, EntryResult] = {}

    def settle(self, index: int, result: EntryResult) -> None:
        self.results[index] = result
        if self._on_result is not None:
            self._on_result(index, result)

    async def run(self, todo: list[int], *, last: bool) -> list[int]:
        """One call; returns the indexes to send again."""
        try:
            response = await self._call([{**self._entries[i], "Id": str(i)} for i in todo])
        except SQS_ERRORS as exc:
            failure = classify(exc)
            if failure.split and len(todo) > 1:
                # Alone, concurrently: one extra round trip for every entry's own verdict. Halving
                # would take fewer calls for a single bad entry but up to four rounds for ten, and
                # the callers wait on every round; this case is rare (the writer validates first).
                async with asyncio.TaskGroup() as group:
                    alone = [group.create_task(self.run([i], last=last)) for i in todo]
                return [i for task in alone for i in task.result()]
            error = SqsError(failure)
            for index in todo:
                self.settle(index, error)
            return []
        return self._read(response, todo, last=last)

    def _read(self, response: Mapping[str, Any], todo: list[int], *, last: bool) -> list[int]:
        for ok in response.get("Successful", []):
            self.settle(int(ok["Id"]), ok)
        again = []
        for failed in response.get("Failed", []):
            code = str(failed.get("Code", "Unknown"))
            failure = entry_failure(code, str(failed.get("Message", "")), sender_fault=failed.get("SenderFault"))
            if failure.retryable and not last:
                again.append(int(failed["Id"]))
            else:
                self.settle(int(failed["Id"]), SqsError(failure))
        return again + [i for i in todo if i not in self.results and i not in again]
