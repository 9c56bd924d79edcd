"""Idempotency-Key replay in the writer, over the in-memory SQS and a SQLite store: a key's
request is sent once, a repeat gets the first answer, a reused key is a 422, one in flight a 409."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError

from conveyor import metadata
from conveyor.idempotency import IdempotencyStore, RequestClaim, RequestState, StoreUnavailableError, open_store
from conveyor.idempotency.sqlite_store import SqliteStore
from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, as_client
from conveyor.writer.api.schemas import MessageIn
from conveyor.writer.app import create_app
from conveyor.writer.replay.replay import in_flight_lease_seconds
from conveyor.writer.state import WriterState
from tests.unit.conftest import QUEUE

PROBLEM = "application/problem+json"


@asynccontextmanager
async def writer(
    fake: InMemorySqs, store_url: str | None, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, WriterState]]:
    """The writer app over the in-memory SQS with a store (or none), and its state to look into."""
    config = WriterSettings(queue_name=QUEUE, batch_linger_ms=5, idempotency_store=store_url, **settings)
    app = create_app(config, client=as_client(fake))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            yield client, app.state.writer


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'idempotency.sqlite3'}"


@pytest.fixture
async def api(fake: InMemorySqs, store_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with writer(fake, store_url) as (client, _):
        yield client


def on_queue(fake: InMemorySqs, queue: str = QUEUE) -> list[Any]:
    return list(fake.queues[queue].messages.values())


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


async def test_a_repeat_gets_the_first_answer_and_nothing_is_sent_again(
    api: httpx.AsyncClient, fake: InMemorySqs
) -> None:
    # GIVEN a message sent with a key
    first = await api.post("/messages", json={"body": {"order": 1}}, headers=keyed("k-1", **{"X-Request-ID": "r-1"}))
    # WHEN the same request is repeated with the same key
    again = await api.post("/messages", json={"body": {"order": 1}}, headers=keyed("k-1", **{"X-Request-ID": "r-2"}))
    # THEN the repeat gets the same status and body, marked replayed, and SQS has one message
    assert first.status_code == again.status_code == 202
    assert again.content == first.content  # the first request's message_id and request_id
    assert again.json() == {"message_id": first.json()["message_id"], "request_id": "r-1"}
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-request-id"] == "r-2"  # the header is this request's own
    assert "idempotent-replayed" not in first.headers
    assert [m.message_id for m in on_queue(fake)] == [first.json()["message_id"]]
    assert fake.count("SendMessageBatch") == 1


async def test_the_same_message_written_differently_is_the_same_request(
    api: httpx.AsyncClient, fake: InMemorySqs
) -> None:
    first = await api.post("/messages", json={"body": {"a": 1, "b": [2]}, "attributes": {}}, headers=keyed("k"))
    reordered = b'{ "body": {"b": [2], "a": 1} ,"delay_seconds": null}'
    again = await api.post("/messages", content=reordered, headers=keyed("k", **{"Content-Type": "application/json"}))
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["message_id"] == first.json()["message_id"]
    assert len(on_queue(fake)) == 1


@pytest.mark.parametrize(
    ("second", "headers"),
    [
        ({"body": {"order": 2}}, {}),  # another body
        ({"body": {"order": 1}, "attributes": {"tenant": "acme"}}, {}),  # another attribute
        ({"body": {"order": 1}}, {"Content-Type": "application/vnd.acme+json"}),  # another content type
    ],
)
async def test_the_same_key_with_another_request_is_422(
    api: httpx.AsyncClient, fake: InMemorySqs, second: dict[str, Any], headers: dict[str, str]
) -> None:
    first = await api.post("/messages", json={"body": {"order": 1}}, headers=keyed("k-1"))
    headers = {"Content-Type": "application/json", **headers}
    reused = await api.post("/messages", content=json.dumps(second).encode(), headers=keyed("k-1", **headers))
    assert first.status_code == 202
    assert reused.status_code == 422
    assert reused.headers["content-type"] == PROBLEM
    problem = reused.json()
    assert problem["type"] == "urn:conveyor:problem:idempotency-key-reused"
    assert problem["field"] == "Idempotency-Key"
    assert "idempotent-replayed" not in reused.headers
    assert len(on_queue(fake)) == 1


async def test_a_new_trace_context_is_still_the_same_request(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    """A retrying client traces each attempt with its own span: traceparent is no part of the request."""
    trace = "00-" + "a" * 32 + "-{}-01"
    first = await api.post("/messages", json={"body": 1}, headers=keyed("k", traceparent=trace.format("b" * 16)))
    again = await api.post("/messages", json={"body": 1}, headers=keyed("k", traceparent=trace.format("c" * 16)))
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert len(on_queue(fake)) == 1


async def test_ten_concurrent_posts_with_one_key_send_one_message(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    # GIVEN an SQS slow enough that the first request is still in flight when the others arrive
    fake.call_delay["SendMessageBatch"] = 0.1
    # WHEN ten identical requests with one key arrive at once
    responses = await asyncio.gather(*(api.post("/messages", json={"body": 1}, headers=keyed("k")) for _ in range(10)))
    # THEN exactly one message is on the queue; one 202 sent it, the others are 409 (in flight, with
    # Retry-After) or replays of the 202
    assert len(on_queue(fake)) == 1
    sent = [r for r in responses if r.status_code == 202 and "idempotent-replayed" not in r.headers]
    assert len(sent) == 1
    for response in responses:
        if response.status_code == 409:
            assert response.json()["type"] == "urn:conveyor:problem:request-in-progress"
            assert response.headers["retry-after"] == "2"
        else:
            assert response.status_code == 202
            assert response.json() == sent[0].json()
    assert Counter(r.status_code for r in responses)[409] >= 1
    # AND a repeat once it is done is a replay
    again = await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == sent[0].json()


async def test_after_a_503_the_same_key_sends_the_message_once(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    # GIVEN SQS cannot be reached for the first attempt
    fake.fail_calls["SendMessageBatch"].append(EndpointConnectionError(endpoint_url="http://x"))
    failed = await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    # WHEN the client retries with the same key
    retried = await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    # THEN the 503 was not remembered: the retry sent the message, once
    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "2"
    assert retried.status_code == 202
    assert "idempotent-replayed" not in retried.headers
    assert [m.message_id for m in on_queue(fake)] == [retried.json()["message_id"]]
    replay = await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    assert replay.headers["idempotent-replayed"] == "true"


async def test_a_refusal_is_not_remembered(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    """Only successes are remembered: after SQS refused the message, the key is free for a fixed one."""
    fake.fail_entries["SendMessageBatch"] = lambda e: {"Code": "InvalidMessageContents", "SenderFault": True}
    refused = await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    del fake.fail_entries["SendMessageBatch"]
    fixed = await api.post("/messages", json={"body": 2}, headers=keyed("k"))
    assert refused.status_code == 422
    assert fixed.status_code == 202
    assert [m.body for m in on_queue(fake)] == ["2"]


async def test_two_clients_with_one_key_send_two_messages(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    # GIVEN two API clients, named by the gateway, that happen to pick the same key
    acme = await api.post("/messages", json={"body": 1}, headers=keyed("k", **{"X-Conveyor-Client": "acme"}))
    globex = await api.post("/messages", json={"body": 1}, headers=keyed("k", **{"X-Conveyor-Client": "globex"}))
    unscoped = await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    # THEN each is its own request: three messages, each with its key in its client's scope
    assert [r.status_code for r in (acme, globex, unscoped)] == [202, 202, 202]
    assert not any("idempotent-replayed" in r.headers for r in (acme, globex, unscoped))
    keys = [m.attributes[metadata.IDEMPOTENCY_KEY]["StringValue"] for m in on_queue(fake)]
    assert keys == ["acme/k", "globex/k", "/k"]  # without a client: the anonymous scope
    again = await api.post("/messages", json={"body": 1}, headers=keyed("k", **{"X-Conveyor-Client": "acme"}))
    assert again.json() == acme.json()
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_caller_without_a_client_never_meets_a_clients_key(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    """Without X-Conveyor-Client (an internal service, a second ingress) the key is in the anonymous
    scope, "/<key>": "alice/order-1" there is not alice's "order-1"."""
    # GIVEN alice's request with her key
    alice = await api.post(
        "/messages", json={"body": {"pay": 10}}, headers=keyed("order-1", **{"X-Conveyor-Client": "alice"})
    )
    # WHEN a caller without a client uses her scoped key as its own, with the same request
    other = await api.post("/messages", json={"body": {"pay": 10}}, headers=keyed("alice/order-1"))
    # THEN it is a request of its own: sent, not alice's answer replayed
    assert alice.status_code == other.status_code == 202
    assert "idempotent-replayed" not in other.headers
    assert other.json()["message_id"] != alice.json()["message_id"]
    keys = [m.attributes[metadata.IDEMPOTENCY_KEY]["StringValue"] for m in on_queue(fake)]
    assert keys == ["alice/order-1", "/alice/order-1"]


@pytest.mark.parametrize("client", ["", "a/b", "x" * 129, "acme corp"])
async def test_a_client_identity_that_cannot_be_a_scope_is_422(api: httpx.AsyncClient, client: str) -> None:
    response = await api.post("/messages", json={"body": 1}, headers=keyed("k", **{"X-Conveyor-Client": client}))
    assert response.status_code == 422
    assert response.json()["field"] == "X-Conveyor-Client"


async def test_a_store_that_cannot_answer_is_503_and_nothing_is_sent(fake: InMemorySqs, tmp_path: Path) -> None:
    # GIVEN a store whose directory cannot be created (a file is in the way)
    (tmp_path / "blocked").write_text("")
    async with writer(fake, f"sqlite:///{tmp_path / 'blocked' / 'store.sqlite3'}") as (api, _):
        keyed_post = await api.post("/messages", json={"body": 1}, headers=keyed("k"))
        plain = await api.post("/messages", json={"body": 2})
        metrics = (await api.get("/metrics")).text
    # THEN the keyed request is 503 with Retry-After and not sent; one without a key does not need the store
    assert keyed_post.status_code == 503
    assert keyed_post.headers["retry-after"] == "2"
    assert keyed_post.json()["type"] == "urn:conveyor:problem:idempotency-store-unavailable"
    assert plain.status_code == 202
    assert [m.body for m in on_queue(fake)] == ["2"]
    assert 'conveyor_writer_idempotency_keys_total{result="store_unavailable"} 1.0' in metrics


async def test_without_a_store_a_key_only_travels(fake: InMemorySqs) -> None:
    async with writer(fake, None) as (api, state):
        responses = [await api.post("/messages", json={"body": 1}, headers=keyed("k")) for _ in range(2)]
    assert state.replay is None
    assert [r.status_code for r in responses] == [202, 202]
    assert not any("idempotent-replayed" in r.headers for r in responses)
    assert len(on_queue(fake)) == 2  # today's behaviour: the processor's deduplication is the only one


async def test_a_request_costs_one_round_trip_to_begin_and_one_to_finish(fake: InMemorySqs, store_url: str) -> None:
    async with writer(fake, store_url) as (api, state):
        assert state.replay is not None
        store = state.replay._store
        assert isinstance(store, SqliteStore)
        before = store.transactions
        await api.post("/messages", json={"body": 1}, headers=keyed("single"))
        single = store.transactions - before
        entries = [{"id": f"e{i}", "body": i, "idempotency_key": f"b-{i}"} for i in range(10)]
        before = store.transactions
        await api.post("/messages/batch", json={"messages": entries})
        batch = store.transactions - before
        before = store.transactions
        await api.post("/messages", json={"body": 1})
        unkeyed = store.transactions - before
    assert (single, batch, unkeyed) == (2, 2, 0)


async def test_a_writer_killed_mid_request_holds_its_key_for_the_longest_send(
    fake: InMemorySqs, store_url: str
) -> None:
    # GIVEN a first request whose writer died after it took the key (its marker is in the store)
    settings = WriterSettings(queue_name=QUEUE)
    async with open_store(store_url) as store:
        claim = await store.begin_request("/k", "whatever", in_flight_lease_seconds(settings))  # anonymous scope
    assert claim.state is RequestState.NEW
    # WHEN the client repeats it
    async with writer(fake, store_url) as (api, _):
        response = await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    # THEN it is told to come back (the first may still reach SQS), and nothing is sent
    assert response.status_code == 409
    assert response.headers["retry-after"] == "2"
    assert on_queue(fake) == []
    assert in_flight_lease_seconds(settings) == 83.0  # (2 + 1) resends x 3 attempts x (3 + 5) s, 1 s hold, margin


# --- POST /messages/batch ---------------------------------------------------------------------


async def test_batch_entries_with_keys_are_replayed_one_by_one(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    entries = [
        {"id": "a", "body": "a", "idempotency_key": "key-a"},
        {"id": "b", "body": "b", "idempotency_key": "key-b"},
        {"id": "c", "body": "c"},  # no key: sent every time
    ]
    first = await api.post("/messages/batch", json={"messages": entries})
    # WHEN the batch is sent again, with one more keyed entry and other entry ids
    again_entries = [{**e, "id": f"{e['id']}2"} for e in entries] + [{"id": "d", "body": "d", "idempotency_key": "k-d"}]
    again = await api.post("/messages/batch", json={"messages": again_entries})
    # THEN the keyed entries get their first message ids back, marked replayed; the others are sent
    ids = {s["id"]: s["message_id"] for s in first.json()["successful"]}
    assert first.json()["failed"] == []
    assert all("replayed" not in s for s in first.json()["successful"])
    successes = {s["id"]: s for s in again.json()["successful"]}
    assert successes["a2"] == {"id": "a2", "message_id": ids["a"], "replayed": True}
    assert successes["b2"] == {"id": "b2", "message_id": ids["b"], "replayed": True}
    assert "replayed" not in successes["c2"]
    assert "replayed" not in successes["d"]
    assert sorted(m.body for m in on_queue(fake)) == ['"a"', '"b"', '"c"', '"c"', '"d"']


async def test_batch_entries_reused_or_in_flight_fail_alone(
    api: httpx.AsyncClient, fake: InMemorySqs, store_url: str
) -> None:
    await api.post("/messages/batch", json={"messages": [{"id": "x", "body": "x", "idempotency_key": "used"}]})
    async with open_store(store_url) as store:  # another writer is sending "busy" right now
        await store.begin_request("/busy", "its fingerprint", 30)  # in the anonymous scope
    entries = [
        {"id": "reused", "body": "not x", "idempotency_key": "used"},
        {"id": "busy", "body": "b", "idempotency_key": "busy"},
        {"id": "fresh", "body": "f", "idempotency_key": "fresh"},
    ]
    response = await api.post("/messages/batch", json={"messages": entries})
    assert response.status_code == 200
    result = response.json()
    assert [s["id"] for s in result["successful"]] == ["fresh"]
    failed = {f["id"]: f for f in result["failed"]}
    assert (failed["reused"]["status"], failed["reused"]["title"], failed["reused"]["retryable"]) == (
        422, "Idempotency key reused", False,
    )  # fmt: skip
    assert (failed["busy"]["status"], failed["busy"]["title"], failed["busy"]["retryable"]) == (
        409, "Request in progress", True,
    )  # fmt: skip
    assert sorted(m.body for m in on_queue(fake)) == ['"f"', '"x"']


async def test_a_batch_with_the_request_header_replays_each_entry(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    """Without entry keys, the header's key made distinct per entry id: a retried batch is replayed."""
    batch = {"messages": [{"id": "1", "body": 1}, {"id": "2", "body": 2, "idempotency_key": "own"}]}
    headers = keyed("batch-7", **{"X-Conveyor-Client": "acme"})
    first = await api.post("/messages/batch", json=batch, headers=headers)
    again = await api.post("/messages/batch", json=batch, headers=headers)
    assert [s.get("replayed") for s in again.json()["successful"]] == [True, True]
    assert [s["message_id"] for s in again.json()["successful"]] == [
        s["message_id"] for s in first.json()["successful"]
    ]
    keys = sorted(m.attributes[metadata.IDEMPOTENCY_KEY]["StringValue"] for m in on_queue(fake))
    assert keys == ["acme/batch-7.1", "acme/own"]


async def test_a_batch_entry_key_sqs_cannot_carry_fails_that_entry(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    entries = [{"id": "bad", "body": 1, "idempotency_key": "a\u0000b"}, {"id": "good", "body": 2}]
    response = await api.post("/messages/batch", json={"messages": entries})
    result = response.json()
    assert [(f["id"], f["status"]) for f in result["failed"]] == [("bad", 422)]
    assert "idempotency_key" in result["failed"][0]["detail"]
    assert [m.body for m in on_queue(fake)] == ["2"]
    too_long = [{"id": "long", "body": 1, "idempotency_key": "k" * 256}]
    assert (await api.post("/messages/batch", json={"messages": too_long})).status_code == 422  # schema


async def test_a_failed_batch_entry_is_not_remembered(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    fake.fail_entries["SendMessageBatch"] = lambda e: (
        {"Code": "InternalError", "SenderFault": False} if e["MessageBody"] == '"b"' else None
    )
    entries = [{"id": "a", "body": "a", "idempotency_key": "ka"}, {"id": "b", "body": "b", "idempotency_key": "kb"}]
    first = await api.post("/messages/batch", json={"messages": entries})
    del fake.fail_entries["SendMessageBatch"]
    retried = await api.post("/messages/batch", json={"messages": entries})
    assert [f["id"] for f in first.json()["failed"]] == ["b"]
    assert {s["id"]: s.get("replayed", False) for s in retried.json()["successful"]} == {"a": True, "b": False}
    assert sorted(m.body for m in on_queue(fake)) == ['"a"', '"b"']


async def test_a_batch_when_the_store_cannot_answer(fake: InMemorySqs, tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("")
    async with writer(fake, f"sqlite:///{tmp_path / 'blocked' / 'store.sqlite3'}") as (api, _):
        mixed = await api.post(
            "/messages/batch",
            json={"messages": [{"id": "k", "body": 1, "idempotency_key": "k"}, {"id": "n", "body": 2}]},
        )
        all_keyed = await api.post("/messages/batch", json={"messages": [{"id": "k", "body": 1}]}, headers=keyed("h"))
    # THEN keyed entries are 503 and not sent; entries without a key are; all keyed: the whole request is 503
    assert mixed.status_code == 200
    assert [(f["id"], f["status"], f["retryable"]) for f in mixed.json()["failed"]] == [("k", 503, True)]
    assert [s["id"] for s in mixed.json()["successful"]] == ["n"]
    assert all_keyed.status_code == 503
    assert all_keyed.headers["retry-after"] == "2"
    assert [m.body for m in on_queue(fake)] == ["2"]


def test_the_fingerprint_covers_every_field_of_a_message() -> None:
    """A field added to MessageIn must be added to the fingerprint (replay/keyed.py), or a request
    differing only in it would be replayed as the same request."""
    fields = {"type", "body", "attributes", "delay_seconds", "group_id", "deduplication_id"}
    assert set(MessageIn.model_fields) == fields


async def test_keys_are_counted_by_the_stores_answer(api: httpx.AsyncClient) -> None:
    await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    await api.post("/messages", json={"body": 1}, headers=keyed("k"))
    await api.post("/messages", json={"body": 2}, headers=keyed("k"))
    metrics = (await api.get("/metrics")).text
    for result in ("new", "replay", "mismatch"):
        assert f'conveyor_writer_idempotency_keys_total{{result="{result}"}} 1.0' in metrics


class AnswersLost:
    """The store carries out the next round that begins keys, but its answer never comes (Redis ran
    the script; both of redis-py's attempts timed out): the writer answers 503."""

    def __init__(self, store: IdempotencyStore) -> None:
        self.store, self.lose_next = store, True

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def finish_and_begin_requests(self, *args: Any, **kwargs: Any) -> list[RequestClaim]:
        claims = await self.store.finish_and_begin_requests(*args, **kwargs)
        if args[2] and self.lose_next:  # a round that begins keys
            self.lose_next = False
            raise StoreUnavailableError("Redis store: TimeoutError: Timeout reading from socket")
        return claims


@pytest.mark.parametrize("route", ["/messages", "/messages/batch"])
async def test_after_a_503_whose_begin_reached_the_store_the_retry_is_sent_not_refused(
    fake: InMemorySqs, store_url: str, route: str
) -> None:
    """The markers a round whose answer was lost may have written are dropped: else each would hold
    its key for its lease (82 s), and the retry the 503 asked for would be a 409 "still being
    handled" for a message never sent."""
    body: dict[str, Any] = {"body": 1}
    if route.endswith("batch"):
        body = {"messages": [{"id": "e1", "body": 1, "idempotency_key": "order-1"}]}
    async with writer(fake, store_url) as (api, state):
        assert state.replay is not None
        state.replay._store = AnswersLost(state.replay._store)  # type: ignore[assignment]  # fault injection
        first = await api.post(route, json=body, headers={"Idempotency-Key": "order-1"})
        retry = await api.post(route, json=body, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 503
    assert retry.status_code in (200, 202), retry.text
    assert len(on_queue(fake)) == 1  # the retry's, and only it


def derived_keys(fake: InMemorySqs) -> dict[str, str]:
    """Each message's idempotency key attribute by its body, without the client's scope."""
    attribute = metadata.IDEMPOTENCY_KEY
    return {m.body: m.attributes[attribute]["StringValue"].partition("/")[2] for m in on_queue(fake)}


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "route-only"])
@pytest.mark.parametrize("store", [True, False], ids=["store", "no-store"])
async def test_a_batch_entrys_key_derived_from_the_header_keeps_within_255_characters(
    fake: InMemorySqs, store_url: str, store: bool, fast_path: bool
) -> None:
    # GIVEN the longest header key and the longest entry id: "<key>.<id>" would be 336 characters
    header, long_id = "k" * 255, "i" * 80
    fits = "f" * (254 - len("e1"))  # "<key>.e1" is exactly 255 characters
    entries = [{"id": long_id, "body": 1}, {"id": "e1", "body": 2}, {"id": "e2", "body": 3}]
    async with writer(fake, store_url if store else None, writer_fast_path=fast_path) as (api, _):
        # WHEN it is posted, and a batch whose derived key is exactly 255 characters
        response = await api.post("/messages/batch", json={"messages": entries}, headers=keyed(header))
        exact = await api.post("/messages/batch", json={"messages": [{"id": "e1", "body": 4}]}, headers=keyed(fits))
        again = await api.post("/messages/batch", json={"messages": entries}, headers=keyed(header))
    # THEN every entry is sent with a key of at most 255 characters, distinct per entry: a longer
    # "<key>.<id>" is replaced by its SHA-256 in hex, a derived key of 255 is kept as it is
    assert [s["id"] for s in response.json()["successful"]] == [long_id, "e1", "e2"]
    assert exact.status_code == 200
    assert exact.json()["failed"] == []
    keys = derived_keys(fake)
    assert keys == {
        "1": hashlib.sha256(f"{header}.{long_id}".encode()).hexdigest(),
        "2": hashlib.sha256(f"{header}.e1".encode()).hexdigest(),
        "3": hashlib.sha256(f"{header}.e2".encode()).hexdigest(),
        "4": f"{fits}.e1",
    }
    assert max(len(key) for key in keys.values()) == 255
    if store:  # the same batch again is replayed entry by entry: the derivation is stable
        assert [s.get("replayed") for s in again.json()["successful"]] == [True, True, True]
        assert len(on_queue(fake)) == 4
