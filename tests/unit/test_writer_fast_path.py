"""The fast path for the valid ``POST /messages`` (writer/http/fast_path.py) answers exactly as the FastAPI
route does: the same status, headers and bytes, and the same message on the queue, for valid
messages and for a corpus of bad input; and it is the path a plain valid message takes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.responses import Response

from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, client_error
from conveyor.writer.api.schemas import MessageIn
from conveyor.writer.http import routes as writer_routes
from tests.unit.conftest import QUEUE, running_writer

JSON = {"content-type": "application/json"}
TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
MAX_BYTES = 4096  # the queue's MaximumMessageSize: a small one, to reach 413 cheaply


@dataclass
class Case:
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=lambda: list(JSON.items()))
    fault: Callable[[InMemorySqs], None] | None = None  # what SQS does to this request's send


def message(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def nested(depth: int) -> bytes:
    return b'{"body":' + b"[" * depth + b"]" * depth + b"}"


def failing(error: BaseException) -> Callable[[InMemorySqs], None]:
    return lambda fake: fake.fail_calls["SendMessageBatch"].append(error)


def entry_failing(code: str, *, sender_fault: bool) -> Callable[[InMemorySqs], None]:
    def fault(fake: InMemorySqs) -> None:
        answers = iter([{"Code": code, "SenderFault": sender_fault, "Message": "injected"}])
        fake.fail_entries["SendMessageBatch"] = lambda entry: next(answers, None)

    return fault


VALID = [
    Case(message(body={"order": 7, "note": "é"}, attributes={"tenant": "acme", "priority": 3, "w": 0.5})),
    Case(b'  {"body" : [1, 2.50, -0, -0.0, 1E2, "\\u00e9\\ud83d\\ude00", null, true], "delay_seconds": 900}\n'),
    Case(b'{"body":1,"body":{"k":1,"k":2}}'),  # JSON's last value wins, in both parsers
    Case(message(body="\u0000 escaped by JSON", group_id="g-1")),
    Case(message(body=12345678901234567890123456789, attributes={"n": 10**30})),
    Case(message(body=1), [*JSON.items(), ("traceparent", TRACEPARENT), ("x-conveyor-client", "team.a")]),
    Case(message(body=1), [*JSON.items(), ("traceparent", "00-nope")]),
    Case(message(body=1), fault=entry_failing("InternalError", sender_fault=False)),  # resent, then taken
]
BAD = [
    Case(b""),
    Case(b"not json"),
    Case(b'{"body":1}x'),
    Case(b'{"body":"\xff"}'),
    Case(b'\xef\xbb\xbf{"body":1}'),  # a UTF-8 byte order mark
    Case(b'{"body":"\\ud800"}'),  # a lone surrogate
    Case(b'{"body":NaN}'),
    Case(b'{"body":1e400}'),
    Case(b'{"body":' + b"7" * 5000 + b"}"),
    Case(b'{"body":1,"attributes":{"n":' + b"7" * 5000 + b"}}"),
    Case(nested(300)),
    Case(nested(5000)),
    Case(b"null"),
    Case(b"[]"),
    Case(message(attributes={})),
    Case(message(body=1, extra=1)),
    Case(message(body=1, attributes={"bad name": "x"})),
    Case(message(body=1, attributes={"conveyor.mine": "x"})),
    Case(message(body=1, attributes={"traceparent": "x"})),
    Case(message(body=1, attributes={f"a{i}": i for i in range(9)})),
    Case(message(body=1, attributes={"a": ""})),
    Case(message(body=1, attributes={"a": True})),
    Case(message(body=1, attributes={"a": None})),
    Case(message(body=1, attributes={"a": "\u0001"})),
    Case(message(body=1, attributes={"a": 1e127})),
    Case(message(body=1, attributes={"a": 10**40})),
    Case(message(body="\ufffe")),
    Case(message(body=1, delay_seconds=901)),
    Case(message(body=1, delay_seconds=-1)),
    Case(message(body=1, delay_seconds="5")),
    Case(b'{"body":1,"delay_seconds":5.0}'),
    Case(message(body=1, group_id="")),
    Case(message(body=1, group_id="with space")),
    Case(message(body=1, deduplication_id="d")),
    Case(message(body="x" * MAX_BYTES)),
    Case(message(body=1), [("content-type", "application/json; charset=utf-8")]),
    Case(message(body=1), [("content-type", "APPLICATION/JSON")]),
    Case(message(body=1), [("content-type", "application/cloudevents+json")]),
    Case(message(body=1), [("content-type", "text/plain")]),
    Case(message(body=1), []),
    Case(message(body=1), [*JSON.items(), ("content-type", "text/plain")]),
    Case(message(body=1), [("content-type", "text/plain"), *JSON.items()]),
    Case(message(body=1), [*JSON.items(), ("x-request-id", "one"), ("x-request-id", "two")]),
    Case(message(body=1), [*JSON.items(), ("x-conveyor-client", "a/b")]),
    Case(message(body=1), [*JSON.items(), ("idempotency-key", "k-1")]),
    Case(message(body=1), [*JSON.items(), ("idempotency-key", "")]),
    Case(message(body=1), fault=failing(client_error("ThrottlingException", "SendMessageBatch"))),
    Case(message(body=1), fault=failing(client_error("AWS.SimpleQueueService.NonExistentQueue", "SendMessageBatch"))),
    Case(message(body=1), fault=failing(client_error("KMS.DisabledException", "SendMessageBatch"))),
    Case(message(body=1), fault=failing(EndpointConnectionError(endpoint_url="http://x"))),
    Case(message(body=1), fault=entry_failing("InvalidMessageContents", sender_fault=True)),
]


@dataclass
class Writer:
    fake: InMemorySqs
    api: httpx.AsyncClient


async def started(stack: AsyncExitStack, *, fast_path: bool) -> Writer:
    fake = InMemorySqs()
    fake.create(QUEUE, MaximumMessageSize=str(MAX_BYTES))
    settings = WriterSettings(queue_name=QUEUE, batch_linger_ms=0, send_retries=2, writer_fast_path=fast_path)
    return Writer(fake, await stack.enter_async_context(running_writer(fake, settings)))


@pytest.fixture
async def writers() -> AsyncIterator[tuple[Writer, Writer]]:
    async with AsyncExitStack() as stack:
        yield await started(stack, fast_path=True), await started(stack, fast_path=False)


async def answer(writer: Writer, case: Case, request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body, with the request id written ``<id>`` (a generated one differs)."""
    if case.fault is not None:
        case.fault(writer.fake)
    headers = case.headers if any(k == "x-request-id" for k, _ in case.headers) else [
        *case.headers, ("x-request-id", request_id)
    ]  # fmt: skip
    response = await writer.api.post("/messages", content=case.body, headers=headers)
    given = response.headers["x-request-id"]
    headers_seen = [(k, v.replace(given, "<id>")) for k, v in response.headers.multi_items()]
    return response.status_code, headers_seen, response.content.replace(given.encode(), b"<id>")


def stored(writer: Writer) -> list[tuple[str, dict[str, Any]]]:
    return [(m.body, m.attributes) for m in writer.fake.queues[QUEUE].messages.values()]


@pytest.mark.parametrize("case", VALID + BAD, ids=lambda c: repr(c.body[:30]) + repr(c.headers[1:])[:40])
async def test_both_paths_answer_byte_for_byte_the_same(writers: tuple[Writer, Writer], case: Case) -> None:
    fast, route = writers
    fast_answer, route_answer = await answer(fast, case, "r-1"), await answer(route, case, "r-1")
    assert fast_answer == route_answer
    assert stored(fast) == stored(route)
    if case in VALID:
        assert fast_answer[0] == 202
        assert len(stored(fast)) == 1


async def test_a_plain_valid_message_takes_the_fast_path(
    writers: tuple[Writer, Writer], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def marked_route(*_: object) -> Response:
        return Response(status_code=299)  # the FastAPI route ran

    monkeypatch.setattr(writer_routes, "_send_one", marked_route)
    fast, route = writers
    assert (await fast.api.post("/messages", json={"body": 1})).status_code == 202
    # what the fast path leaves to the route reaches it
    assert (await fast.api.post("/messages", json={"body": 1}, headers={"idempotency-key": "k"})).status_code == 299
    assert (await route.api.post("/messages", json={"body": 1})).status_code == 299


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
ATTRIBUTE_VALUES = st.text() | st.integers() | st.floats() | st.booleans() | st.none()


@given(
    body=JSON_VALUES,
    attributes=st.dictionaries(st.text(max_size=8), ATTRIBUTE_VALUES, max_size=3),
    delay=st.none() | st.integers(-2, 902) | st.floats(0, 5),
    ascii_only=st.booleans(),
    spaced=st.booleans(),
)
def test_pydantics_json_parser_accepts_only_what_the_route_accepts_and_reads_it_the_same(
    body: object, attributes: dict[str, object], delay: object, ascii_only: bool, spaced: bool
) -> None:
    document = {"body": body, "attributes": attributes} | ({} if delay is None else {"delay_seconds": delay})
    separators = (", ", ": ") if spaced else (",", ":")
    raw = json.dumps(document, ensure_ascii=ascii_only, separators=separators).encode()  # NaN, Infinity too
    try:
        fast = MessageIn.model_validate_json(raw)
    except ValidationError:
        return  # the route answers it: the same answer by construction
    assert MessageIn.model_validate(json.loads(raw)) == fast


async def test_a_message_id_json_must_escape_is_answered_as_the_route_would(
    writers: tuple[Writer, Writer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQS's ids are UUIDs; should one ever need escaping, the 202 is Starlette's own rendering
    for writer in writers:
        store = writer.fake._store
        monkeypatch.setattr(writer.fake, "_store", lambda *args, store=store: 'odd "id" é\\' + store(*args))
    fast, route = writers
    case = Case(message(body=1))
    fast_answer, route_answer = await answer(fast, case, "r-1"), await answer(route, case, "r-1")
    assert fast_answer == route_answer
    assert json.loads(fast_answer[2])["message_id"].startswith('odd "id" é\\')
