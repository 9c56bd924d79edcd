"""Per-entry results and retries of retryable failed entries only."""

from __future__ import annotations

from typing import Any

from conveyor.sqs.batch_call import call_batch
from conveyor.sqs.errors import Kind, SqsError
from conveyor.testing.sqs import client_error


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


def _refuse_whole_call_if(bad: str, code: str = "InvalidParameterValue") -> tuple[list[list[str]], Any]:
    calls: list[list[str]] = []

    async def call(entries: list[Any]) -> dict[str, Any]:
        calls.append([e["Body"] for e in entries])
        if any(e["Body"] == bad for e in entries):
            raise client_error(code, "SendMessageBatch", 400, message="one entry is bad")
        return {"Successful": [{"Id": e["Id"]} for e in entries]}

    return calls, call


async def test_a_whole_call_refused_for_one_entry_gives_each_entry_its_own_verdict() -> None:
    # GIVEN SQS refuses a whole batch because of one entry
    calls, call = _refuse_whole_call_if("bad")
    # WHEN the batch is sent
    results = await call_batch(call, [{"Body": b} for b in ("a", "bad", "c")], retries=2)
    # THEN the entries are sent again one by one: only the bad one is refused, as the sender's fault
    assert calls[0] == ["a", "bad", "c"]
    assert sorted(map(tuple, calls[1:])) == [("a",), ("bad",), ("c",)]
    assert [isinstance(r, SqsError) for r in results] == [False, True, False]
    assert isinstance(results[1], SqsError)
    assert results[1].failure.kind is Kind.SENDER


async def test_an_unknown_whole_call_code_is_split_and_never_the_senders_fault() -> None:
    _, call = _refuse_whole_call_if("odd", code="SomethingSqsInventsTomorrow")
    results = await call_batch(call, [{"Body": "ok"}, {"Body": "odd"}], retries=2)
    assert not isinstance(results[0], SqsError)
    assert isinstance(results[1], SqsError)
    assert results[1].failure.kind is Kind.RETRYABLE


async def test_a_batch_too_long_is_split() -> None:
    calls: list[list[str]] = []

    async def call(entries: list[Any]) -> dict[str, Any]:
        calls.append([e["Body"] for e in entries])
        if len(entries) > 1:
            raise client_error("AWS.SimpleQueueService.BatchRequestTooLong", "SendMessageBatch", 400)
        return {"Successful": [{"Id": e["Id"]} for e in entries]}

    results = await call_batch(call, [{"Body": "a"}, {"Body": "b"}], retries=0)
    assert not any(isinstance(r, SqsError) for r in results)
    assert len(calls) == 3


async def test_each_result_is_reported_as_soon_as_it_is_known() -> None:
    # GIVEN a batch where one entry fails once for a retryable reason
    seen: list[tuple[str, int]] = []

    async def call(entries: list[Any]) -> dict[str, Any]:
        seen.append(("call", len(entries)))
        flaky = [e for e in entries if e["Body"] == "flaky"]
        if flaky and len(seen) == 1:
            ok = [{"Id": e["Id"]} for e in entries if e["Body"] != "flaky"]
            return {"Successful": ok, "Failed": [{"Id": flaky[0]["Id"], "Code": "InternalError", "SenderFault": False}]}
        return {"Successful": [{"Id": e["Id"]} for e in entries]}

    # WHEN it is sent with a callback per result
    results = await call_batch(
        call, [{"Body": "ok"}, {"Body": "flaky"}], retries=2, on_result=lambda i, _: seen.append(("result", i))
    )
    # THEN the good entry is reported before the failed one is sent again
    assert seen == [("call", 2), ("result", 0), ("call", 1), ("result", 1)]
    assert not any(isinstance(r, SqsError) for r in results)
