"""Per-entry results and retries of retryable failed entries only."""

from __future__ import annotations

from typing import Any

from conveyor.sqs.batch_call import call_batch
from conveyor.sqs.errors import Kind, SqsError
from tests.fakes import client_error


async def test_retryable_entries_are_sent_again_alone() -> None:
    calls: list[list[str]] = []

    async def call(entries: list[Any]) -> dict[str, Any]:
        calls.append([e["Body"] for e in entries])
        failed = [
            {"Id": e["Id"], "Code": "InternalError", "SenderFault": False}
            for e in entries
            if e["Body"] == "flaky" and len(calls) == 1
        ]
        bad = [
            {"Id": e["Id"], "Code": "InvalidParameterValue", "SenderFault": True} for e in entries if e["Body"] == "bad"
        ]
        ok = [{"Id": e["Id"]} for e in entries if e["Body"] == "ok" or (e["Body"] == "flaky" and len(calls) > 1)]
        return {"Successful": ok, "Failed": failed + bad}

    results = await call_batch(call, [{"Body": "ok"}, {"Body": "flaky"}, {"Body": "bad"}], retries=2)
    assert calls == [["ok", "flaky", "bad"], ["flaky"]]
    assert not isinstance(results[0], SqsError)
    assert not isinstance(results[1], SqsError)
    assert isinstance(results[2], SqsError)
    assert results[2].failure.kind is Kind.SENDER


async def test_retries_are_bounded() -> None:
    calls = 0

    async def call(entries: list[Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"Failed": [{"Id": e["Id"], "Code": "ThrottlingException", "SenderFault": False} for e in entries]}

    [result] = await call_batch(call, [{"Body": "x"}], retries=2)
    assert calls == 3
    assert isinstance(result, SqsError)
    assert result.failure.retryable


async def test_a_whole_call_failure_is_classified_for_each_entry() -> None:
    async def call(entries: list[Any]) -> dict[str, Any]:
        raise client_error("AccessDenied", "DeleteMessageBatch", 403)

    results = await call_batch(call, [{"Body": "a"}, {"Body": "b"}], retries=2)
    assert all(isinstance(r, SqsError) and r.failure.kind is Kind.FATAL for r in results)


async def test_entries_sqs_forgot_are_not_reported_as_done() -> None:
    async def call(entries: list[Any]) -> dict[str, Any]:
        return {"Successful": [], "Failed": []}

    [result] = await call_batch(call, [{"Body": "a"}], retries=0)
    assert isinstance(result, SqsError)
    assert result.failure.code == "MissingResult"
