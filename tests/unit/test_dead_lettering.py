"""Dead-lettering: the copy keeps every attribute value and always fits, a redriven copy that
fails again keeps its attributes, and an error that cannot be printed still gets there."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from conveyor import Message, Reject, metadata
from conveyor.processor.engine.dead_letter import fitting_attributes
from conveyor.processor.engine.lease import Lease
from conveyor.processor.engine.outcome import DeadLetter
from conveyor.sqs import limits
from conveyor.testing.sqs import InMemorySqs
from tests.unit.engine_support import DLQ, QUEUE, left, running, until


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


def record_of(fake: InMemorySqs) -> dict[str, object]:
    [dead] = fake.queues[DLQ].messages.values()
    record: dict[str, object] = json.loads(dead.attributes[metadata.DEAD_LETTER]["StringValue"])
    return record


# The last-resort dead-letter copy must not drop the tenth attribute for nothing.
def test_a_copy_without_a_record_keeps_all_ten_originals() -> None:
    attributes: dict[str, Any] = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(9)}
    attributes["tenant"] = {"DataType": "String", "StringValue": "acme"}
    max_bytes = 2048
    body = "b" * (max_bytes - limits.attribute_bytes(attributes))  # exactly fits its queue (and the DLQ)
    lease = Lease("id-1", "h", body, attributes, {"ApproximateReceiveCount": "1"}, 0.0, 30.0)
    copy = fitting_attributes(lease, DeadLetter(Reject("no"), exhausted=False), "q", max_bytes)
    assert metadata.DEAD_LETTER not in copy  # no record fits: fine, SQS's redrive would do the same
    assert copy.keys() == attributes.keys()  # but the copy must not be worse than SQS's redrive


def test_a_redriven_copy_that_fails_again_keeps_its_tenth_attribute() -> None:
    attributes: dict[str, Any] = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(10)}
    first = Lease("id-1", "h", "body", attributes, {"ApproximateReceiveCount": "1"}, 0.0, 30.0)
    copy = fitting_attributes(first, DeadLetter(Reject("no"), exhausted=False), "q", 262_144)
    # the operator redrives the copy to the source; it fails again
    again = Lease("id-2", "h2", "body", dict(copy), {"ApproximateReceiveCount": "1"}, 0.0, 30.0)
    second = fitting_attributes(again, DeadLetter(Reject("no"), exhausted=False), "q", 262_144)
    record = json.loads(second[metadata.DEAD_LETTER]["StringValue"])
    assert "a9" in second or "a9" in record.get("overflow_attributes", {})


# The dead-letter copy keeps every value and always fits.
async def test_binary_attributes_past_the_ninth_keep_their_value_in_the_record(fake: InMemorySqs) -> None:
    attributes: dict[str, dict[str, object]] = {
        f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(9)
    }
    attributes["z-blob"] = {"DataType": "Binary.gzip", "BinaryValue": b"\x00\xffraw"}
    fake.put(QUEUE, "x", attributes)

    async def handler(message: Message) -> None:
        raise Reject("no")

    async with running(fake, handler):
        await until(lambda: left(fake, DLQ) == 1 and left(fake) == 0)
    overflow = record_of(fake)["overflow_attributes"]
    assert overflow == {"z-blob": {"DataType": "Binary.gzip", "BinaryValue": base64.b64encode(b"\x00\xffraw").decode()}}


async def test_a_reject_that_fits_its_queue_but_not_with_its_record_is_dead_lettered_at_once(fake: InMemorySqs) -> None:
    # GIVEN queues of 1 KiB and a body close to that limit
    fake.queues[QUEUE].attributes["MaximumMessageSize"] = "1024"
    fake.queues[DLQ].attributes["MaximumMessageSize"] = "1024"
    fake.put(QUEUE, "b" * 900, {"tenant": {"DataType": "String", "StringValue": "acme"}})
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise Reject("bad " * 300)

    async with running(fake, handler, dlq_max_message_bytes=1024):
        await until(lambda: left(fake, DLQ) == 1 and left(fake) == 0)
    # THEN it was dead-lettered on its first receive, with as much of its story as fits
    assert calls == 1
    [dead] = fake.queues[DLQ].messages.values()
    assert dead.body == "b" * 900
    assert "original_message_id" in record_of(fake)


class UnprintableError(Exception):
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


# An error that cannot even say what it is must still be retried and dead-lettered.
async def test_an_error_that_cannot_be_printed_is_retried_then_dead_lettered(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise UnprintableError

    async with running(fake, handler, max_receive_count=2, retry_base_seconds=0, retry_max_seconds=0) as engine:
        await until(lambda: len(fake.queues[DLQ].messages) == 1 and left(fake) == 0)
        assert len(engine.inflight) == 0
    assert calls == 2
    [dead] = fake.queues[DLQ].messages.values()
    record = json.loads(dead.attributes[metadata.DEAD_LETTER]["StringValue"])
    assert record["error_type"].endswith("UnprintableError")
    assert "cannot be shown" in record["error_message"]
