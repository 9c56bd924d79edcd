"""One SQS batch call with per-entry results, shared by every batch operation.

SQS answers HTTP 200 even when entries fail, so ``Failed`` is always read: entries that failed for a
retryable reason (throttling, server side) are sent again, alone, up to ``retries`` times with
backoff; the others get their classified error. A whole-call failure is not retried here: botocore's
retry policy already did.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from conveyor.sqs.errors import SQS_ERRORS, Kind, SqsError, SqsFailure, classify, kind_of_code

type EntryResult = Mapping[str, Any] | SqsError  # the entry's item from ``Successful``, or its error
type BatchCall = Callable[[list[Any]], Awaitable[Mapping[str, Any]]]

RETRY_BASE_SECONDS = 0.05
MISSING = SqsFailure("MissingResult", "SQS reported neither success nor failure", Kind.RETRYABLE)


async def call_batch(call: BatchCall, entries: Sequence[Mapping[str, Any]], retries: int) -> list[EntryResult]:
    """Run ``call`` on ``entries`` (each without ``Id``: ids are assigned here); results in order."""
    results: dict[int, EntryResult] = {}
    todo = list(range(len(entries)))
    for attempt in range(retries + 1):
        todo = await _attempt(call, entries, todo, results, last=attempt == retries)
        if not todo:
            break
        await asyncio.sleep(RETRY_BASE_SECONDS * 2**attempt * (0.5 + random.random()))
    return [results.get(i, SqsError(MISSING)) for i in range(len(entries))]


async def _attempt(
    call: BatchCall,
    entries: Sequence[Mapping[str, Any]],
    todo: list[int],
    results: dict[int, EntryResult],
    *,
    last: bool,
) -> list[int]:
    """One call; returns the indexes to send again."""
    try:
        response = await call([{**entries[i], "Id": str(i)} for i in todo])
    except SQS_ERRORS as exc:  # classified and handed to every entry of the call
        error = SqsError(classify(exc))
        results.update(dict.fromkeys(todo, error))
        return []
    for ok in response.get("Successful", []):
        results[int(ok["Id"])] = ok
    again = []
    for failed in response.get("Failed", []):
        code = str(failed.get("Code", "Unknown"))
        failure = SqsFailure(
            code, str(failed.get("Message", "")), kind_of_code(code, sender_fault=failed.get("SenderFault"))
        )
        if failure.retryable and not last:
            again.append(int(failed["Id"]))
        else:
            results[int(failed["Id"])] = SqsError(failure)
    return again + [i for i in todo if i not in results and i not in again]
