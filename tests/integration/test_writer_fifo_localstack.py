"""POST /messages/batch on a real FIFO queue (LocalStack): each group's entries are on the queue in
request order."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

from conveyor.localstack import LocalStack
from tests.integration.test_writer_localstack import writer
from tests.localstack_fixtures import drain, make_queues

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


async def test_batch_entries_keep_their_order_within_each_group(localstack: LocalStack, sqs: SQSClient) -> None:
    # GIVEN a FIFO queue, and a batch of 40 entries of four groups, interleaved
    fifo = make_queues(localstack.endpoint, fifo=True)
    sizes = {"a": 16, "b": 12, "c": 8, "d": 4}
    entries = [
        {"id": f"{g}-{n}", "body": {"g": g, "n": n}, "group_id": g}
        for n in range(max(sizes.values()))
        for g, size in sizes.items()
        if n < size
    ]
    async with writer(fifo) as api:
        # WHEN it is posted (the Idempotency-Key header gives each entry its deduplication id)
        response = await api.post("/messages/batch", json={"messages": entries}, headers={"Idempotency-Key": "b-1"})
    assert response.status_code == 200, response.text
    assert response.json()["failed"] == []
    # THEN each group is on the queue in request order (SQS's sequence numbers), nothing missing
    received = drain(sqs, fifo.url, len(entries))
    by_group: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for message in received:
        body = json.loads(message["Body"])
        assert message["Attributes"]["MessageGroupId"] == body["g"]
        by_group[body["g"]].append((int(message["Attributes"]["SequenceNumber"]), body["n"]))
    assert {g: [n for _, n in sorted(seq)] for g, seq in by_group.items()} == {
        g: list(range(size)) for g, size in sizes.items()
    }


async def test_no_client_can_make_sqs_drop_another_clients_message(localstack: LocalStack, sqs: SQSClient) -> None:
    """SQS drops a FIFO message whose deduplication id it saw in the last 5 minutes, whoever sent it:
    mallory's own id must never be the one alice's key gives."""
    fifo = make_queues(localstack.endpoint, fifo=True)
    async with writer(fifo) as api:
        # GIVEN mallory posting, as her deduplication id, the text alice's scoped key once gave
        evil = await api.post(
            "/messages",
            json={"body": "mallory", "group_id": "g", "deduplication_id": "alice/order-1"},
            headers={"X-Conveyor-Client": "mallory"},
        )
        # WHEN alice posts with her key
        real = await api.post(
            "/messages",
            json={"body": "alice's order", "group_id": "g"},
            headers={"X-Conveyor-Client": "alice", "Idempotency-Key": "order-1"},
        )
    # THEN both are on the queue
    assert (evil.status_code, real.status_code) == (202, 202)
    bodies = sorted(m["Body"] for m in drain(sqs, fifo.url, 2))
    assert bodies == ['"alice\'s order"', '"mallory"']
