"""What the writer refuses before anything is sent, and how it says so, to the character: what SQS
would refuse is a 422 naming the field (a trailing newline, a number out of SQS's bounds), what it
takes is sent as written, a body that does not parse gets a documented answer; an invalid traceparent
header is dropped."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.requests import Request

from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs
from conveyor.writer.api.request_meta import RequestMeta, request_meta
from tests.unit.conftest import QUEUE, running_writer

TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


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
    api: httpx.AsyncClient, fake: InMemorySqs, payload: dict[str, object], field: str
) -> None:
    response = await api.post("/messages", json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert fake.count("SendMessageBatch") == 0


async def test_a_batch_entry_id_with_a_trailing_newline_is_422(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    response = await api.post("/messages/batch", json={"messages": [{"id": "a\n", "body": 1}]})
    assert response.status_code == 422
    assert response.json()["field"] == "messages.0.id"
    assert fake.count("SendMessageBatch") == 0


async def test_ids_with_a_trailing_newline_are_422_on_a_fifo_queue(writer_settings: WriterSettings) -> None:
    fake = InMemorySqs()
    fake.create("orders.fifo")
    settings = WriterSettings(queue_name="orders.fifo")
    async with running_writer(fake, settings) as api:
        group = await api.post("/messages", json={"body": 1, "group_id": "g\n", "deduplication_id": "d"})
        dedup = await api.post("/messages", json={"body": 1, "group_id": "g", "deduplication_id": "d\n"})
    assert (group.status_code, group.json()["field"]) == (422, "group_id")
    assert (dedup.status_code, dedup.json()["field"]) == (422, "deduplication_id")
    assert fake.count("SendMessageBatch") == 0


@pytest.mark.parametrize("value", [1e-128, 1.5e-128, 0.0, -0.0, 1e126, -1e126, 12345678901234567890, 2.5])
async def test_numbers_sqs_takes_are_sent_as_written(api: httpx.AsyncClient, fake: InMemorySqs, value: float) -> None:
    response = await api.post("/messages", json={"body": 1, "attributes": {"n": value}})
    assert response.status_code == 202, response.text
    [message] = fake.queues[QUEUE].messages.values()
    assert json.loads(message.attributes["n"]["StringValue"]) == value


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"body": ' + b"7" * 5000 + b"}", "body"),
        (b'{"body": {"deep": [1, ' + b"7" * 5000 + b"]}}", "body"),
        (b'{"body": 1, "attributes": {"n": ' + b"7" * 5000 + b"}}", "attributes.n"),
    ],
)
async def test_an_integer_too_long_to_parse_is_422_naming_the_field(
    api: httpx.AsyncClient, fake: InMemorySqs, content: bytes, field: str
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
