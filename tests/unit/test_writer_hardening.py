"""The writer's answers are true (issue 16): one bad entry never refuses its neighbours, server-side
causes are never the client's fault and never leak SQS's text, SQS's rules are enforced to the
character, and each caller is answered as soon as its own entry's result is known."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import structlog
from starlette.requests import Request

from conveyor.settings import WriterSettings
from conveyor.sqs.queues import QueueConfig
from conveyor.writer.api.request_meta import RequestMeta, request_meta
from conveyor.writer.api.schemas import MessageIn
from conveyor.writer.http.edge import request_id_from
from conveyor.writer.sending.outgoing import build_outgoing
from tests.fakes import FakeSqs, client_error
from tests.unit.conftest import QUEUE, running_writer

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def patch_send(monkeypatch: pytest.MonkeyPatch, fake: FakeSqs, before: Any) -> list[list[str]]:
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
    fake: FakeSqs, monkeypatch: pytest.MonkeyPatch
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
    fake: FakeSqs, monkeypatch: pytest.MonkeyPatch
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


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ExpiredToken", 503),
        ("RequestExpired", 503),
        ("KMS.KeyUnavailableException", 503),
        ("SomethingSqsInventsTomorrow", 503),
        ("KMS.DisabledException", 500),
        ("KMS.InvalidStateException", 500),
        ("KMS.InvalidKeyUsageException", 500),
        ("KMS.OptInRequired", 500),
        ("KMS.NotFoundException", 500),
        ("InvalidClientTokenId", 500),
    ],
)
async def test_credential_kms_and_unknown_errors_are_server_side_and_leak_nothing(
    api: httpx.AsyncClient, fake: FakeSqs, code: str, status: int
) -> None:
    # GIVEN SQS fails every call with a text naming a key ARN and the account
    text = f"The key {KEY_ARN} of account 123456789012 cannot be used"
    for _ in range(12):  # the first call, and each entry sent alone if the code is split
        fake.fail_calls["SendMessageBatch"].append(client_error(code, "SendMessageBatch", 400, message=text))
    with structlog.testing.capture_logs() as logs:
        response = await api.post("/messages", json={"body": 1})
        batch = await api.post("/messages/batch", json={"messages": [{"id": "a", "body": 1}, {"id": "b", "body": 2}]})
    # THEN it is a server-side answer with the code and a generic detail; SQS's text is in the log only
    for answer in (response, batch):
        assert answer.status_code == status, answer.text
        assert answer.json()["code"] == code
        assert answer.json()["detail"]
        assert "arn:" not in answer.text
        assert "123456789012" not in answer.text
    assert ("retry-after" in response.headers) is (status == 503)
    failed = [event for event in logs if event["event"] == "sqs_send_failed"]
    assert any(text in event["error"] and event["request_id"] for event in failed), logs


async def test_a_content_error_from_sqs_keeps_a_generic_detail(api: httpx.AsyncClient, fake: FakeSqs) -> None:
    fake.fail_entries["SendMessageBatch"] = lambda entry: {
        "Code": "InvalidParameterValue", "SenderFault": True, "Message": f"bad value for queue {KEY_ARN}",
    }  # fmt: skip
    response = await api.post("/messages", json={"body": 1})
    assert response.status_code == 422
    assert response.json()["code"] == "InvalidParameterValue"
    assert "arn:" not in response.text


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"body": 1, "attributes": {"tenant\n": "acme"}}, "attributes.tenant\n"),
        ({"body": 1, "group_id": "g\n"}, "group_id"),
        ({"body": 1, "attributes": {"n": 1e-300}}, "attributes.n"),
        ({"body": 1, "attributes": {"n": 1e-129}}, "attributes.n"),
        ({"body": 1, "attributes": {"n": -5e-129}}, "attributes.n"),
        ({"body": 1, "attributes": {"n": 1e127}}, "attributes.n"),
    ],
)
async def test_what_sqs_refuses_is_422_naming_the_field(
    api: httpx.AsyncClient, fake: FakeSqs, payload: dict[str, object], field: str
) -> None:
    response = await api.post("/messages", json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert fake.count("SendMessageBatch") == 0


async def test_a_batch_entry_id_with_a_trailing_newline_is_422(api: httpx.AsyncClient, fake: FakeSqs) -> None:
    response = await api.post("/messages/batch", json={"messages": [{"id": "a\n", "body": 1}]})
    assert response.status_code == 422
    assert response.json()["field"] == "messages.0.id"
    assert fake.count("SendMessageBatch") == 0


async def test_ids_with_a_trailing_newline_are_422_on_a_fifo_queue(writer_settings: WriterSettings) -> None:
    fake = FakeSqs()
    fake.create("orders.fifo")
    settings = WriterSettings(queue_name="orders.fifo")
    async with running_writer(fake, settings) as api:
        group = await api.post("/messages", json={"body": 1, "group_id": "g\n", "deduplication_id": "d"})
        dedup = await api.post("/messages", json={"body": 1, "group_id": "g", "deduplication_id": "d\n"})
    assert (group.status_code, group.json()["field"]) == (422, "group_id")
    assert (dedup.status_code, dedup.json()["field"]) == (422, "deduplication_id")
    assert fake.count("SendMessageBatch") == 0


@pytest.mark.parametrize("value", [1e-128, 1.5e-128, 0.0, -0.0, 1e126, -1e126, 12345678901234567890, 2.5])
async def test_numbers_sqs_takes_are_sent_as_written(api: httpx.AsyncClient, fake: FakeSqs, value: float) -> None:
    response = await api.post("/messages", json={"body": 1, "attributes": {"n": value}})
    assert response.status_code == 202, response.text
    [message] = fake.queues[QUEUE].messages.values()
    assert json.loads(message.attributes["n"]["StringValue"]) == value


def test_a_request_id_with_a_trailing_newline_is_replaced() -> None:
    assert request_id_from({"x-request-id": "abc"}) == "abc"
    assert request_id_from({"x-request-id": "abc\n"}) != "abc\n"


def _meta_with(headers: dict[str, str]) -> RequestMeta:
    scope = {
        "type": "http",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "state": {"request_id": "r1"},
    }
    return request_meta(Request(scope))


def test_a_traceparent_with_a_trailing_newline_is_dropped() -> None:
    assert _meta_with({"traceparent": TRACEPARENT}).traceparent == TRACEPARENT
    assert _meta_with({"traceparent": TRACEPARENT + "\n"}).traceparent is None


def test_an_idempotency_key_with_a_trailing_newline_is_not_a_deduplication_id() -> None:
    fifo = QueueConfig("url", "arn", 1_048_576, 30, True, False, None, None)
    outgoing = build_outgoing(MessageIn(body=1, group_id="g"), RequestMeta("r", key="k\n"), fifo)
    assert outgoing.deduplication_id is not None
    assert "\n" not in outgoing.deduplication_id
    assert outgoing.deduplication_id != "k\n"


async def test_a_batch_call_stays_within_the_queues_own_limit(
    writer_settings: WriterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a queue whose MaximumMessageSize is still 256 KiB (SQS caps a batch call by it too)
    fake = FakeSqs()
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
    fake: FakeSqs, monkeypatch: pytest.MonkeyPatch
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


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"body": ' + b"7" * 5000 + b"}", "body"),
        (b'{"body": {"deep": [1, ' + b"7" * 5000 + b"]}}", "body"),
        (b'{"body": 1, "attributes": {"n": ' + b"7" * 5000 + b"}}", "attributes.n"),
    ],
)
async def test_an_integer_too_long_to_parse_is_422_naming_the_field(
    api: httpx.AsyncClient, fake: FakeSqs, content: bytes, field: str
) -> None:
    response = await api.post("/messages", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:conveyor:problem:invalid-message"
    assert problem["field"] == field
    assert "4300 digits" in problem["detail"]
    assert fake.count("SendMessageBatch") == 0


async def test_an_integer_too_long_in_a_batch_names_the_entry(api: httpx.AsyncClient) -> None:
    content = b'{"messages": [{"id": "a", "body": 1}, {"id": "b", "body": ' + b"7" * 5000 + b"}]}"
    response = await api.post("/messages/batch", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["field"] == "messages.1.body"


@pytest.mark.parametrize(
    ("content", "status", "title"),
    [
        (b'{"body": "\xff"}', 400, "Malformed JSON"),  # not UTF-8
        (b"[" * 100_000 + b"]" * 100_000, 422, "Invalid message"),  # valid, but too deep to parse
    ],
)
async def test_bodies_that_do_not_parse_get_a_documented_answer(
    api: httpx.AsyncClient, content: bytes, status: int, title: str
) -> None:
    response = await api.post("/messages", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["title"] == title
    assert json.loads(response.text)["status"] == status
