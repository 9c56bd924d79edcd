"""sqs/send_batch.py: SendMessageBatch made from botocore's pieces must be the client's own call, on the
wire and in what it returns or raises. Both are run against the same scripted answers (a
``before-send`` handler: no network) and compared."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.endpoint import AioEndpoint
from botocore.awsrequest import AWSPreparedRequest
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError, EndpointConnectionError

from conveyor.settings import WriterSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import classify
from conveyor.sqs.send_batch import BatchSender

URL = "http://sqs.test/000000000000/work"
ENTRIES = [
    {
        "MessageBody": '{"order":1}',
        "MessageAttributes": {"tenant": {"DataType": "String", "StringValue": "acme"}},
        "Id": "0",
    },
    {"MessageBody": "é", "MessageAttributes": {}, "DelaySeconds": 5, "Id": "1"},
]
OK = json.dumps({"Successful": [{"Id": "0", "MessageId": "m-0", "MD5OfMessageBody": "x"}], "Failed": [
    {"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "try again"}
]}).encode()  # fmt: skip
VARYING = {"x-amz-date", "authorization", "amz-sdk-invocation-id"}  # per request, by design


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        return self.data


type Answer = tuple[int, dict[str, str], bytes] | Exception


@dataclass
class Script:
    """Answers the requests in turn (the same script is played to each client) and records them."""

    answers: list[Answer]
    requests: list[AWSPreparedRequest] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # the metrics observer's (operation, outcome)

    def before_send(self, request: AWSPreparedRequest, **_: Any) -> AioAWSResponse:
        answer = self.answers[len(self.requests) % len(self.answers)]
        self.requests.append(request)
        if isinstance(answer, Exception):
            raise answer
        status, headers, body = answer
        return AioAWSResponse(request.url, status, HTTPHeaders.from_pairs(list(headers.items())), Body(body))


@pytest.fixture
async def clients(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[[Script], Awaitable[Any]]]:
    async def no_wait(_: AioEndpoint, seconds: float) -> None:
        assert 0 <= seconds <= 20  # botocore's backoff said how long; the test does not wait it out

    monkeypatch.setattr(AioEndpoint, "_sleep", no_wait)
    settings = WriterSettings(queue_name="work", sqs_endpoint_url="http://sqs.test", sqs_max_attempts=2)
    made: list[Any] = []

    async def client_with(script: Script) -> Any:
        context = sqs_client(settings, lambda operation, outcome: script.calls.append((operation, outcome)))
        made.append(context)
        client = await context.__aenter__()
        client.meta.events.register_first("before-send.sqs.SendMessageBatch", script.before_send)  # type: ignore[arg-type]
        return client

    yield client_with
    for context in made:
        await context.__aexit__(None, None, None)


async def both(make: Any, answers: list[Answer]) -> tuple[tuple[Script, Any], tuple[Script, Any]]:
    """The client's own call and BatchSender's, each on its own client with the same script."""
    results = []
    for direct in (False, True):
        script = Script(answers)
        client = await make(script)
        try:
            if direct:
                outcome: Any = await BatchSender(client)(URL, ENTRIES)
            else:
                outcome = await client.send_message_batch(QueueUrl=URL, Entries=ENTRIES)
        except Exception as exc:  # noqa: BLE001 - compared below
            outcome = exc
        results.append((script, outcome))
    return results[0], results[1]


def wire(request: AWSPreparedRequest) -> tuple[str, str, dict[str, str], bytes]:
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    for name in VARYING:
        assert name in headers, name
        headers[name] = "<varies>"
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    return request.method, request.url, headers, body


def without_metadata(parsed: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parsed.items() if k != "ResponseMetadata"}


async def test_the_request_and_the_answer_are_the_clients_own(clients: Any) -> None:
    (theirs, their_answer), (ours, our_answer) = await both(clients, [(200, {}, OK)])
    assert [wire(r) for r in ours.requests] == [wire(r) for r in theirs.requests]
    assert json.loads(wire(ours.requests[0])[3]) == {"QueueUrl": URL, "Entries": ENTRIES}
    signed = ours.requests[0].headers["Authorization"]
    assert (signed.decode() if isinstance(signed, bytes) else signed).startswith("AWS4-HMAC-SHA256 Credential=")
    assert without_metadata(our_answer) == without_metadata(their_answer)
    assert ours.calls == theirs.calls == [("SendMessageBatch", "ok")]


@pytest.mark.parametrize(
    "answers",
    [
        [(500, {}, b'{"__type":"InternalError","message":"boom"}'), (200, {}, OK)],  # retried, then taken
        [(400, {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
          b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}')],
        [(400, {}, b'{"__type":"com.amazonaws.sqs#BatchRequestTooLong","message":"too long"}')],
        [(400, {}, b'{"__type":"com.amazon.coral.availability#ThrottlingException","message":"slow down"}')],
        [(403, {}, b'{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"expired"}')],
        [(503, {}, b"not json at all")],
        [EndpointConnectionError(endpoint_url="http://sqs.test")],
    ],
    ids=["500-then-ok", "queue-missing", "batch-too-long", "throttled", "expired", "503-not-json", "unreachable"],
)  # fmt: skip
async def test_errors_and_retries_are_the_clients_own(clients: Any, answers: list[Answer]) -> None:
    (theirs, their_outcome), (ours, our_outcome) = await both(clients, answers)
    assert len(ours.requests) == len(theirs.requests)  # botocore's retries: the same attempts
    assert [wire(r)[2]["amz-sdk-request"] for r in ours.requests] == [
        wire(r)[2]["amz-sdk-request"] for r in theirs.requests
    ]
    assert type(our_outcome).__name__ == type(their_outcome).__name__  # each client makes its error classes
    if isinstance(their_outcome, BaseException):
        assert classify(our_outcome) == classify(their_outcome)
        if isinstance(their_outcome, ClientError):
            assert our_outcome.response["Error"] == their_outcome.response["Error"]
    else:
        assert without_metadata(our_outcome) == without_metadata(their_outcome)
    assert ours.calls == theirs.calls


async def test_a_client_it_cannot_read_is_called_the_ordinary_way() -> None:
    class Plain:
        meta = None  # no service model: nothing to prepare from

        async def send_message_batch(self, **params: Any) -> dict[str, Any]:
            return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in params["Entries"]], "Failed": []}

    sender = BatchSender(Plain())  # type: ignore[arg-type]  # not an aiobotocore client
    assert (await sender(URL, ENTRIES))["Successful"] == [{"Id": "0", "MessageId": "m"}, {"Id": "1", "MessageId": "m"}]
    assert (await sender(URL, ENTRIES[:1]))["Successful"] == [{"Id": "0", "MessageId": "m"}]
