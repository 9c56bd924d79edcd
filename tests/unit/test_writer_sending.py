"""How messages reach SQS, over an in-memory SQS: concurrent messages share SendMessageBatch calls,
and each caller is answered with its own entry's result as soon as that is known; a call SQS refuses
for one bad entry refuses only that entry; a call stays within the queue's own size limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, client_error
from tests.unit.conftest import QUEUE, running_writer


def patch_send(monkeypatch: pytest.MonkeyPatch, fake: InMemorySqs, before: Any) -> list[list[str]]:
    """Run ``before(entries)`` ahead of each SendMessageBatch (to refuse or hold it); returns the
    bodies of every call."""
    original = fake.send_message_batch
    calls: list[list[str]] = []

    async def send_message_batch(QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        calls.append([e["MessageBody"] for e in Entries])
        await before(Entries)
        return await original(QueueUrl=QueueUrl, Entries=Entries)

    monkeypatch.setattr(fake, "send_message_batch", send_message_batch)
    return calls


async def test_one_bad_entry_of_a_refused_batch_is_the_only_one_refused(
    fake: InMemorySqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SQS refuses a whole SendMessageBatch when one entry is bad
    async def refuse_bad(entries: list[dict[str, Any]]) -> None:
        if any(e["MessageBody"] == '"bad"' for e in entries):
            raise client_error("InvalidParameterValue", "SendMessageBatch", message="Value for parameter is invalid")

    calls = patch_send(monkeypatch, fake, refuse_bad)
    settings = WriterSettings(queue_name=QUEUE, batch_linger_ms=50)
    async with running_writer(fake, settings) as api:
        # WHEN four good messages and a bad one are posted together
        bodies = ["a", "b", "bad", "c", "d"]
        responses = await asyncio.gather(*(api.post("/messages", json={"body": b}) for b in bodies))
    # THEN they shared a call, and only the bad one is refused
    assert len(calls[0]) == 5
    assert [r.status_code for r in responses] == [202, 202, 422, 202, 202]
    assert responses[2].json()["code"] == "InvalidParameterValue"
    assert sorted(m.body for m in fake.queues[QUEUE].messages.values()) == ['"a"', '"b"', '"c"', '"d"']


async def test_one_bad_entry_of_a_refused_batch_request_fails_alone(
    fake: InMemorySqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse_bad(entries: list[dict[str, Any]]) -> None:
        if any(e["MessageBody"] == '"bad"' for e in entries):
            raise client_error("InvalidMessageContents", "SendMessageBatch")

    patch_send(monkeypatch, fake, refuse_bad)
    async with running_writer(fake, WriterSettings(queue_name=QUEUE)) as api:
        messages = [{"id": f"m{i}", "body": "bad" if i == 3 else i} for i in range(8)]
        response = await api.post("/messages/batch", json={"messages": messages})
    assert response.status_code == 200
    result = response.json()
    assert len(result["successful"]) == 7
    assert [(f["id"], f["status"], f["code"]) for f in result["failed"]] == [("m3", 422, "InvalidMessageContents")]


async def test_a_batch_call_stays_within_the_queues_own_limit(
    writer_settings: WriterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a queue whose MaximumMessageSize is still 256 KiB (SQS caps a batch call by it too)
    fake = InMemorySqs()
    fake.create(QUEUE, MaximumMessageSize="262144")
    async with running_writer(fake, WriterSettings(queue_name=QUEUE, batch_linger_ms=50)) as api:
        # WHEN three 100 KiB messages are posted at once
        big = "x" * 100 * 1024
        responses = await asyncio.gather(*(api.post("/messages", json={"body": big + str(i)}) for i in range(3)))
    # THEN all are accepted, in more than one call, none of which SQS refused as too long
    assert [r.status_code for r in responses] == [202, 202, 202], responses[0].text
    calls = [kwargs["Entries"] for op, kwargs in fake.calls if op == "SendMessageBatch"]
    assert len(calls) >= 2
    assert all(sum(len(e["MessageBody"]) for e in entries) <= 262_144 for entries in calls)
    assert len(fake.queues[QUEUE].messages) == 3


async def test_an_entry_is_answered_while_another_of_its_batch_is_retried(
    fake: InMemorySqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SQS fails one entry of a shared call for a retryable reason, and its resend hangs
    resend_may_answer = asyncio.Event()

    async def hold_the_resend(entries: list[dict[str, Any]]) -> None:
        if len(calls) > 1:
            await resend_may_answer.wait()

    calls = patch_send(monkeypatch, fake, hold_the_resend)
    first_try = {"Code": "InternalError", "SenderFault": False}
    fake.fail_entries["SendMessageBatch"] = lambda e: (
        first_try if e["MessageBody"] == '"flaky"' and len(calls) == 1 else None
    )
    async with running_writer(fake, WriterSettings(queue_name=QUEUE, batch_linger_ms=50)) as api:
        good = asyncio.create_task(api.post("/messages", json={"body": "good"}))
        flaky = asyncio.create_task(api.post("/messages", json={"body": "flaky"}))
        # WHEN the flaky entry is being sent again THEN the good one is answered already
        answered = await asyncio.wait_for(good, timeout=10)
        assert answered.status_code == 202
        assert len(calls[0]) == 2
        assert not flaky.done()
        resend_may_answer.set()
        assert (await flaky).status_code == 202
