"""POST /messages/batch on a FIFO queue: each group's entries reach the queue in request
order, one per group per SendMessageBatch and one call after another per group; a failed entry stops
its group's later entries, and only its group's."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError

from conveyor.idempotency import open_store
from conveyor.settings import WriterSettings
from conveyor.sqs.queues import QueueConfig
from conveyor.testing.sqs import InMemorySqs
from conveyor.writer.api.request_meta import RequestMeta
from conveyor.writer.api.schemas import MessageIn
from conveyor.writer.sending.outgoing import build_outgoing
from tests.unit.conftest import running_writer

FIFO = "orders.fifo"


@pytest.fixture
def fifo() -> InMemorySqs:
    fake = InMemorySqs()
    fake.create(FIFO)
    return fake


@pytest.fixture
async def api(fifo: InMemorySqs) -> AsyncIterator[httpx.AsyncClient]:
    async with running_writer(fifo, WriterSettings(queue_name=FIFO, batch_linger_ms=5)) as client:
        yield client


def entry(group: str, n: int, **fields: Any) -> dict[str, Any]:
    own = {"id": f"{group}-{n}", "body": {"g": group, "n": n}, "group_id": group, "deduplication_id": f"{group}-{n}"}
    return own | fields


def on_queue_by_group(fake: InMemorySqs) -> dict[str, list[int]]:
    """Each group's message numbers in the order the queue holds them."""
    groups: dict[str, list[int]] = defaultdict(list)
    for message in sorted(fake.queues[FIFO].messages.values(), key=lambda m: m.sequence_number):
        body = json.loads(message.body)
        groups[body["g"]].append(body["n"])
    return dict(groups)


def calls(fake: InMemorySqs) -> list[list[str]]:
    """The entry ids (group-n) of each SendMessageBatch, in call order."""
    return [
        [f"{json.loads(e['MessageBody'])['g']}-{json.loads(e['MessageBody'])['n']}" for e in kwargs["Entries"]]
        for op, kwargs in fake.calls
        if op == "SendMessageBatch"
    ]


def interleaved(groups: dict[str, int]) -> list[dict[str, Any]]:
    """Entries of several groups, interleaved in request order: a0 b0 c0 a1 b1 a2 ..."""
    most = max(groups.values())
    return [entry(g, n) for n in range(most) for g, count in groups.items() if n < count]


async def test_each_groups_entries_reach_the_queue_in_request_order(api: httpx.AsyncClient, fifo: InMemorySqs) -> None:
    # GIVEN a batch of interleaved groups of different lengths
    response = await api.post("/messages/batch", json={"messages": interleaved({"a": 6, "b": 3, "c": 1, "d": 5})})
    # THEN every entry is accepted, in request order per group
    assert response.status_code == 200
    assert response.json()["failed"] == []
    assert on_queue_by_group(fifo) == {"a": list(range(6)), "b": list(range(3)), "c": [0], "d": list(range(5))}
    # AND no call carried two entries of one group, and each group's entries went one call after another
    sent = calls(fifo)
    for call in sent:
        groups = [entry_id.split("-")[0] for entry_id in call]
        assert len(groups) == len(set(groups)), call
    order = [entry_id for call in sent for entry_id in call]
    assert [e for e in order if e.startswith("a-")] == [f"a-{n}" for n in range(6)]
    assert len(sent) == 6  # one round per entry of the longest group: the groups share the calls


async def test_many_groups_share_calls_of_ten(api: httpx.AsyncClient, fifo: InMemorySqs) -> None:
    response = await api.post("/messages/batch", json={"messages": [entry(f"g{i}", 0) for i in range(25)]})
    assert len(response.json()["successful"]) == 25
    assert sorted(len(call) for call in calls(fifo)) == [5, 10, 10]


async def test_a_failed_entry_stops_its_group_and_only_its_group(api: httpx.AsyncClient, fifo: InMemorySqs) -> None:
    # GIVEN SQS refuses one entry of group a (the second)
    def refuse_a1(e: dict[str, Any]) -> dict[str, Any] | None:
        if e["MessageGroupId"] == "a" and '"n":1' in e["MessageBody"]:
            return {"Code": "InvalidMessageContents", "SenderFault": True}
        return None

    fifo.fail_entries["SendMessageBatch"] = refuse_a1
    # WHEN a batch of two interleaved groups is posted
    response = await api.post("/messages/batch", json={"messages": interleaved({"a": 4, "b": 4})})
    # THEN group a stops at the refused entry: its later entries are not sent, and say why; b is whole
    result = response.json()
    assert response.status_code == 200
    assert on_queue_by_group(fifo) == {"a": [0], "b": [0, 1, 2, 3]}
    failed = {f["id"]: f for f in result["failed"]}
    assert failed["a-1"]["status"] == 422
    for later in ("a-2", "a-3"):
        assert (failed[later]["status"], failed[later]["title"], failed[later]["retryable"]) == (
            424, "Earlier entry failed", True,
        )  # fmt: skip
        assert "'a-1'" in failed[later]["detail"]
    assert sorted(s["id"] for s in result["successful"]) == ["a-0", "b-0", "b-1", "b-2", "b-3"]
    assert not any(e.startswith(("a-2", "a-3")) for call in calls(fifo) for e in call)


async def test_an_invalid_entry_stops_the_rest_of_its_group(api: httpx.AsyncClient, fifo: InMemorySqs) -> None:
    entries = interleaved({"a": 3, "b": 2})
    entries[2]["attributes"] = {"bad name!": "x"}  # a-1: refused before anything is sent
    response = await api.post("/messages/batch", json={"messages": entries})
    failed = {f["id"]: f["status"] for f in response.json()["failed"]}
    assert failed == {"a-1": 422, "a-2": 424}
    assert on_queue_by_group(fifo) == {"a": [0], "b": [0, 1]}


async def test_sqs_down_makes_the_whole_batch_503(api: httpx.AsyncClient, fifo: InMemorySqs) -> None:
    """The entries stopped behind a failed one share its cause: nothing accepted, SQS unreachable."""
    fifo.fail_calls["SendMessageBatch"].append(EndpointConnectionError(endpoint_url="http://x"))
    response = await api.post("/messages/batch", json={"messages": interleaved({"a": 3, "b": 3})})
    assert response.status_code == 503
    assert response.json()["type"] == "urn:conveyor:problem:sqs-unavailable"
    assert response.headers["retry-after"] == "2"
    assert fifo.queues[FIFO].messages == {}


async def test_a_retryable_failure_is_resent_before_the_group_goes_on(
    api: httpx.AsyncClient, fifo: InMemorySqs
) -> None:
    throttled = iter([True])
    fifo.fail_entries["SendMessageBatch"] = lambda e: (
        {"Code": "ThrottlingException", "SenderFault": False}
        if e["MessageGroupId"] == "a" and '"n":0' in e["MessageBody"] and next(throttled, False)
        else None
    )
    response = await api.post("/messages/batch", json={"messages": interleaved({"a": 3, "b": 1})})
    assert response.json()["failed"] == []
    assert on_queue_by_group(fifo) == {"a": [0, 1, 2], "b": [0]}


async def test_an_idempotency_key_in_flight_stops_its_group(fifo: InMemorySqs, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    async with open_store(url) as store:  # another request with a-0's key is being sent right now
        await store.begin_request("/key-a0", "its fingerprint", 30)  # the anonymous scope
    entries = interleaved({"a": 2, "b": 2})
    entries[0]["idempotency_key"] = "key-a0"
    settings = WriterSettings(queue_name=FIFO, idempotency_store=url)
    async with running_writer(fifo, settings) as api:
        response = await api.post("/messages/batch", json={"messages": entries})
        # AND a replayed entry lets its group go on: a-0 remembered, the whole batch again sends a-1
        first = await api.post("/messages/batch", json={"messages": [entry("c", 0, idempotency_key="key-c0")]})
        again = await api.post(
            "/messages/batch", json={"messages": [entry("c", 0, idempotency_key="key-c0"), entry("c", 1)]}
        )
    failed = {f["id"]: f["status"] for f in response.json()["failed"]}
    assert failed == {"a-0": 409, "a-1": 424}
    assert first.json()["failed"] == again.json()["failed"] == []
    assert [s.get("replayed", False) for s in again.json()["successful"]] == [True, False]
    assert on_queue_by_group(fifo) == {"b": [0, 1], "c": [0, 1]}


async def test_a_standard_queue_batch_is_not_held_to_group_order(
    fake: InMemorySqs, writer_settings: WriterSettings
) -> None:
    """On a standard queue a group id is only a label: entries are sent as fast as possible."""
    async with running_writer(fake, writer_settings) as api:
        entries = [{"id": f"e{n}", "body": n, "group_id": "g"} for n in range(5)]
        response = await api.post("/messages/batch", json={"messages": entries})
    assert len(response.json()["successful"]) == 5
    assert fake.count("SendMessageBatch") == 1


# The deduplication ids SQS gets: in the client's scope, explicit ids apart from derived ones (SQS drops
# a message whose id it saw in the last 5 minutes, whoever sent it).


def dedup_ids(fake: InMemorySqs) -> list[str | None]:
    """The MessageDeduplicationId of every entry sent, in call order (None: SQS derives it)."""
    return [
        e.get("MessageDeduplicationId")
        for op, kwargs in fake.calls
        if op == "SendMessageBatch"
        for e in kwargs["Entries"]
    ]


def from_client(name: str | None, **headers: str) -> dict[str, str]:
    return headers if name is None else {"X-Conveyor-Client": name, **headers}


async def test_no_client_can_choose_another_clients_deduplication_id(
    fifo: InMemorySqs, writer_settings: WriterSettings
) -> None:
    settings = writer_settings.model_copy(update={"queue_name": FIFO})
    # GIVEN mallory posting, as her own deduplication id, what alice's key would have given before
    posts = [
        ("mallory", {"deduplication_id": "alice/order-1"}, {}),
        ("alice", {}, {"Idempotency-Key": "order-1"}),  # alice's key
        ("alice", {"deduplication_id": "order-1"}, {}),  # alice's own id, the same text
        (None, {"deduplication_id": "alice/order-1"}, {}),  # no client: the anonymous scope
        (None, {}, {"Idempotency-Key": "alice/order-1"}),
        (None, {}, {"Idempotency-Key": "order-1"}),
    ]
    async with running_writer(fifo, settings) as api:
        for client, fields, headers in posts:
            message = {"body": 1, "group_id": "g"} | fields
            response = await api.post("/messages", json=message, headers=from_client(client, **headers))
            assert response.status_code == 202, response.text
    # THEN every one has its own id: the client's scope, then "/" for an explicit id, "!" for a key
    assert dedup_ids(fifo) == [
        "mallory/alice/order-1", "alice!order-1", "alice/order-1", "/alice/order-1", "!alice/order-1", "!order-1",
    ]  # fmt: skip


async def test_a_deduplication_id_too_long_with_its_scope_is_hashed(
    fifo: InMemorySqs, writer_settings: WriterSettings
) -> None:
    settings = writer_settings.model_copy(update={"queue_name": FIFO})
    client, own, key = "c" * 128, "d" * 128, "k" * 255
    async with running_writer(fifo, settings) as api:
        for fields, headers in [({"deduplication_id": own}, {}), ({}, {"Idempotency-Key": key})]:
            message = {"body": 1, "group_id": "g"} | fields
            response = await api.post("/messages", json=message, headers=from_client(client, **headers))
            assert response.status_code == 202, response.text
    assert dedup_ids(fifo) == [
        hashlib.sha256(f"{client}/{own}".encode()).hexdigest(),
        hashlib.sha256(f"{client}!{key}".encode()).hexdigest(),
    ]


async def test_batch_entries_get_the_ids_single_messages_get(fifo: InMemorySqs) -> None:
    async with running_writer(fifo, WriterSettings(queue_name=FIFO, batch_linger_ms=5)) as api:
        single = await api.post(
            "/messages", json={"body": 1, "group_id": "g"}, headers=from_client("alice", **{"Idempotency-Key": "k1"})
        )
        entries = [
            {"id": "e1", "body": 1, "group_id": "g", "idempotency_key": "k1"},
            {"id": "e2", "body": 2, "group_id": "g"},  # the header's key, with ".e2"
            {"id": "e3", "body": 3, "group_id": "g", "deduplication_id": "e3"},
        ]
        batch = await api.post(
            "/messages/batch", json={"messages": entries}, headers=from_client("alice", **{"Idempotency-Key": "b"})
        )
    assert single.status_code == 202
    assert batch.json()["failed"] == []
    assert dedup_ids(fifo) == ["alice!k1", "alice!k1", "alice!b.e2", "alice/e3"]


def test_an_idempotency_key_with_a_trailing_newline_is_not_a_deduplication_id() -> None:
    fifo = QueueConfig("url", "arn", 1_048_576, 30, True, False, None, None)
    outgoing = build_outgoing(MessageIn(body=1, group_id="g"), RequestMeta("r", key="k\n"), fifo)
    assert outgoing.deduplication_id is not None
    assert "\n" not in outgoing.deduplication_id
    assert outgoing.deduplication_id != "k\n"


async def test_content_based_deduplication_is_scoped_by_the_client(writer_settings: WriterSettings) -> None:
    fake = InMemorySqs()
    fake.create(FIFO, ContentBasedDeduplication="true")
    settings = writer_settings.model_copy(update={"queue_name": FIFO})
    # GIVEN two clients (and a caller without one) posting the same body without an id or a key
    async with running_writer(fake, settings) as api:
        for client in ("alice", "bob", None):
            message = {"body": {"pay": 10}, "group_id": "g"}
            response = await api.post("/messages", json=message, headers=from_client(client))
            assert response.status_code == 202, response.text
    # THEN each client's message has an id of its own (SQS would drop bob's as alice's copy); without a
    # client, the queue's own content-based deduplication is kept
    assert dedup_ids(fake) == [
        hashlib.sha256(b'alice#{"pay":10}').hexdigest(), hashlib.sha256(b'bob#{"pay":10}').hexdigest(), None,
    ]  # fmt: skip
