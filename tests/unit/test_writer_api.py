"""The writer's HTTP contract, over an in-memory SQS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from botocore.exceptions import EndpointConnectionError

from conveyor import metadata
from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, client_error
from conveyor.writer.http.edge import RequestIds
from tests.unit.conftest import QUEUE, running_writer

PROBLEM = "application/problem+json"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def request_id_from(headers: dict[str, str]) -> str:
    """The request id the edge gives a request with these headers (lower-case names)."""
    return RequestIds().of(headers)


def stored(fake: InMemorySqs) -> list[tuple[str, dict[str, object]]]:
    return [(m.body, m.attributes) for m in fake.queues[QUEUE].messages.values()]


async def test_message_is_on_the_queue_before_202(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    # GIVEN a message with attributes WHEN it is posted
    response = await api.post(
        "/messages",
        json={"body": {"order": 7, "note": "é"}, "attributes": {"tenant": "acme", "priority": 3}},
        headers={"X-Request-ID": "req-123", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )
    # THEN it is answered 202 with the SQS id, and SQS holds the compact body and all attributes
    assert response.status_code == 202
    assert response.headers["x-request-id"] == "req-123"
    [message] = fake.queues[QUEUE].messages.values()
    assert response.json() == {"message_id": message.message_id, "request_id": "req-123"}
    assert message.body == '{"order":7,"note":"é"}'
    assert message.attributes["tenant"] == {"DataType": "String", "StringValue": "acme"}
    assert message.attributes["priority"] == {"DataType": "Number", "StringValue": "3"}
    assert message.attributes[metadata.REQUEST_ID]["StringValue"] == "req-123"
    assert message.attributes[metadata.TRACEPARENT]["StringValue"].startswith("00-aaaa")
    assert message.attributes[metadata.CONTENT_TYPE]["StringValue"] == "application/json"


async def test_request_id_is_generated_when_missing_or_invalid(api: httpx.AsyncClient) -> None:
    response = await api.post("/messages", json={"body": 1}, headers={"X-Request-ID": "bad id!"})
    assert response.status_code == 202
    generated = response.headers["x-request-id"]
    assert generated != "bad id!"
    assert len(generated) == 32
    assert response.json()["request_id"] == generated


def test_a_request_id_with_a_trailing_newline_is_replaced() -> None:
    assert request_id_from({"x-request-id": "abc"}) == "abc"
    assert request_id_from({"x-request-id": "abc\n"}) != "abc\n"


async def test_concurrent_posts_are_coalesced(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    responses = await asyncio.gather(*(api.post("/messages", json={"body": i}) for i in range(30)))
    assert [r.status_code for r in responses] == [202] * 30
    ids = {r.json()["message_id"] for r in responses}
    assert ids == set(fake.queues[QUEUE].messages)  # each caller got its own entry's id
    assert fake.count("SendMessageBatch") <= 6  # 30 messages, batches of up to 10


async def test_malformed_json_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post("/messages", content=b'{"body": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["title"] == "Malformed JSON"


async def test_wrong_content_type_is_415(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    response = await api.post("/messages", content=b'{"body": 1}', headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM
    assert stored(fake) == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"body": 1, "extra": True}, "extra"),
        ({}, "body"),
        ({"body": 1, "delay_seconds": 901}, "delay_seconds"),
        ({"body": 1, "attributes": {"flag": True}}, "attributes.flag.str"),
        ({"body": 1, "attributes": {"bad name!": "x"}}, "attributes.bad name!"),
        ({"body": 1, "attributes": {"conveyor.request_id": "x"}}, "attributes.conveyor.request_id"),
        ({"body": 1, "attributes": {"n": "a\u0000b"}}, "attributes.n"),
        ({"body": "\ufffe"}, "body"),
        ({"body": 1, "deduplication_id": "d"}, "deduplication_id"),
        ({"body": 1, "attributes": {f"a{i}": i for i in range(9)}}, "attributes"),
    ],
)
async def test_invalid_message_is_422_naming_the_field(
    api: httpx.AsyncClient, fake: InMemorySqs, payload: dict[str, object], field: str
) -> None:
    response = await api.post("/messages", json=payload)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == PROBLEM
    assert problem["field"] == field
    assert problem["request_id"] == response.headers["x-request-id"]
    assert stored(fake) == []


async def test_message_over_the_queue_limit_is_413_to_the_byte(writer_settings: WriterSettings) -> None:
    # GIVEN a queue that takes at most 2,000 bytes (body + attribute names, types and values)
    fake = InMemorySqs()
    fake.create(QUEUE, MaximumMessageSize="2000")
    request_id = "r" * 10
    meta = len(metadata.REQUEST_ID) + len("String") + len(request_id)
    meta += len(metadata.CONTENT_TYPE) + len("String") + len("application/json")
    fits = 2000 - meta - 2  # the body is a JSON string: two quotes
    headers = {"X-Request-ID": request_id}
    async with running_writer(fake, writer_settings) as api:
        # WHEN one message is exactly at the limit and another one byte over
        ok = await api.post("/messages", json={"body": "x" * fits}, headers=headers)
        over = await api.post("/messages", json={"body": "x" * (fits + 1)}, headers=headers)
    # THEN the first is accepted and the second refused with 413, counted exactly
    assert ok.status_code == 202, ok.text
    assert over.status_code == 413
    assert over.json()["field"] == "body"
    assert "2001 bytes" in over.json()["detail"]
    assert len(stored(fake)) == 1


async def test_request_over_the_http_limit_is_413(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    big = json.dumps({"body": "x" * (3 * 1024 * 1024)}).encode()
    response = await api.post("/messages", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(40):
            yield b"x" * 65536

    streamed = await api.post("/messages", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert stored(fake) == []


async def test_sqs_throttling_is_503_with_retry_after(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    fake.fail_calls["SendMessageBatch"].append(client_error("ThrottlingException", "SendMessageBatch"))
    response = await api.post("/messages", json={"body": 1})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    problem = response.json()
    assert problem["code"] == "ThrottlingException"
    assert problem["retryable"] is True
    assert stored(fake) == []


async def test_sqs_unreachable_is_503(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    fake.fail_calls["SendMessageBatch"].append(EndpointConnectionError(endpoint_url="http://x"))
    response = await api.post("/messages", json={"body": 1})
    assert response.status_code == 503
    assert response.json()["code"] == "EndpointConnectionError"


async def test_missing_queue_is_500_with_the_code(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    error = client_error("AWS.SimpleQueueService.NonExistentQueue", "SendMessageBatch")
    fake.fail_calls["SendMessageBatch"].append(error)
    response = await api.post("/messages", json={"body": 1})
    assert response.status_code == 500
    assert response.json()["code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert "Traceback" not in response.text


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
    api: httpx.AsyncClient, fake: InMemorySqs, code: str, status: int
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


async def test_a_content_error_from_sqs_keeps_a_generic_detail(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    fake.fail_entries["SendMessageBatch"] = lambda entry: {
        "Code": "InvalidParameterValue", "SenderFault": True, "Message": f"bad value for queue {KEY_ARN}",
    }  # fmt: skip
    response = await api.post("/messages", json={"body": 1})
    assert response.status_code == 422
    assert response.json()["code"] == "InvalidParameterValue"
    assert "arn:" not in response.text


async def test_only_retryable_failed_entries_are_retried(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    # GIVEN SQS fails one entry once for a server-side reason
    failures = iter([{"Code": "InternalError", "SenderFault": False, "Message": "try again"}])
    fake.fail_entries["SendMessageBatch"] = lambda entry: next(failures, None)
    response = await api.post("/messages", json={"body": "x"})
    # THEN it is sent again and accepted; the retry carried just that entry
    assert response.status_code == 202
    batches = [kwargs["Entries"] for op, kwargs in fake.calls if op == "SendMessageBatch"]
    assert [len(b) for b in batches] == [1, 1]
    assert len(stored(fake)) == 1


async def test_sender_fault_entries_are_not_retried(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    fake.fail_entries["SendMessageBatch"] = lambda entry: {
        "Code": "InvalidMessageContents", "SenderFault": True, "Message": "bad"
    }  # fmt: skip
    response = await api.post("/messages", json={"body": "x"})
    assert response.status_code == 422
    assert response.json()["code"] == "InvalidMessageContents"
    assert fake.count("SendMessageBatch") == 1


async def test_batch_reports_each_entry(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    entries = [{"id": f"ok{i}", "body": {"i": i}} for i in range(12)]
    entries += [{"id": "chars", "body": "\uffff"}, {"id": "big", "body": "x" * 1_100_000}]
    response = await api.post("/messages/batch", json={"messages": entries})
    assert response.status_code == 200
    result = response.json()
    assert sorted(s["id"] for s in result["successful"]) == sorted(f"ok{i}" for i in range(12))
    failed = {f["id"]: f for f in result["failed"]}
    assert failed["chars"]["status"] == 422
    assert failed["big"]["status"] == 413
    assert failed["big"]["retryable"] is False
    assert len(stored(fake)) == 12
    assert fake.count("SendMessageBatch") == 2


async def test_batch_with_one_shared_sqs_failure_is_503(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    fake.fail_calls["SendMessageBatch"].append(client_error("ServiceUnavailable", "SendMessageBatch", 503))
    response = await api.post("/messages/batch", json={"messages": [{"id": "a", "body": 1}]})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": []},
        {"messages": [{"id": "a", "body": 1}, {"id": "a", "body": 2}]},
        {"messages": [{"id": "bad id", "body": 1}]},
        {"messages": [{"id": f"e{i}", "body": i} for i in range(101)]},
    ],
)
async def test_invalid_batch_is_422(api: httpx.AsyncClient, fake: InMemorySqs, payload: dict[str, object]) -> None:
    response = await api.post("/messages/batch", json=payload)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert stored(fake) == []


async def test_idempotency_key_travels_as_an_attribute(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    response = await api.post("/messages", json={"body": 1}, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 202
    [(_, attributes)] = stored(fake)
    assert attributes[metadata.IDEMPOTENCY_KEY] == {"DataType": "String", "StringValue": "/k-1"}  # the anonymous scope
    too_long = await api.post("/messages", json={"body": 1}, headers={"Idempotency-Key": "k" * 256})
    assert too_long.status_code == 422
    assert too_long.json()["field"] == "Idempotency-Key"


async def test_unknown_route_is_problem_json(api: httpx.AsyncClient) -> None:
    response = await api.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_health_ready_and_metrics(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/readyz")).status_code == 200
    await api.post("/messages", json={"body": 1})
    metrics = (await api.get("/metrics")).text
    assert 'conveyor_writer_requests_total{route="/messages",status="202"} 1.0' in metrics
    assert "conveyor_writer_batch_entries_count 1.0" in metrics
    assert 'conveyor_writer_messages_total{result="accepted"} 1.0' in metrics


async def test_the_time_of_each_send_message_batch_is_measured(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    # GIVEN an SQS that takes 30 ms to answer a SendMessageBatch
    fake.call_delay["SendMessageBatch"] = 0.03
    # WHEN one message is sent
    assert (await api.post("/messages", json={"body": 1})).status_code == 202
    # THEN the call's time is in the histogram, in the bucket of 25 to 50 ms
    metrics = (await api.get("/metrics")).text
    assert "conveyor_writer_batch_seconds_count 1.0" in metrics
    assert 'conveyor_writer_batch_seconds_bucket{le="0.025"} 0.0' in metrics
    assert 'conveyor_writer_batch_seconds_bucket{le="0.05"} 1.0' in metrics


async def test_readyz_is_503_when_sqs_fails(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    fake.fail_calls["GetQueueAttributes"].append(client_error("ServiceUnavailable", "GetQueueAttributes", 503))
    response = await api.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
