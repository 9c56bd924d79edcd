"""The dead-letter record of a large message: a message close to the queue's limit that fails, is
redriven (`conveyor dlq redrive` puts its record into ``conveyor.redrive_history``, as much of it as
fits the queue) and fails again must be dead-lettered with the record of that failure; the older
history gives way to it, the user's body and attributes never do."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from conveyor import Message, Reject, metadata
from conveyor.dlq.record import DeadLettered, redriven_attributes
from conveyor.processor.engine.dead_letter import fitting_attributes
from conveyor.processor.engine.lease import Lease
from conveyor.processor.engine.outcome import DeadLetter
from conveyor.sqs import limits
from conveyor.testing.sqs import InMemorySqs, StoredMessage
from tests.unit.engine_support import DLQ, QUEUE, left, running, until

LIMIT = limits.MAX_MESSAGE_BYTES  # both queues: 1 MiB
WRITER = {
    metadata.REQUEST_ID: {"DataType": "String", "StringValue": "6f0c3b1e2d4a4b8c9e7f0a1b2c3d4e5f"},
    metadata.CONTENT_TYPE: {"DataType": "String", "StringValue": "application/json"},
}


def as_received(message: StoredMessage) -> DeadLettered:
    """A DLQ message as `conveyor dlq peek` and `redrive` read it."""
    raw = {"MessageId": message.message_id, "ReceiptHandle": "h", "Body": message.body,
           "MessageAttributes": message.attributes, "Attributes": {"SentTimestamp": str(message.sent_ms)}}  # fmt: skip
    return DeadLettered.from_sqs(raw)


def sizes(message: StoredMessage) -> int:
    return limits.message_bytes(message.body, message.attributes)


async def dead_letter_once(fake: InMemorySqs) -> StoredMessage:
    """Run the processor (every message fails validation) until the queue is empty; the DLQ's one copy."""

    async def handler(message: Message) -> None:
        raise Reject("order 17: amount must be positive; currency must be one of EUR, USD")

    async with running(fake, handler):
        await until(lambda: left(fake) == 0 and left(fake, DLQ) == 1)
    [copy] = fake.queues[DLQ].messages.values()
    return copy


@pytest.mark.parametrize("room", [200, 300, 400])
async def test_a_large_message_redriven_and_failing_again_keeps_the_record_of_its_failure(room: int) -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    body = json.dumps({"blob": "x" * (LIMIT - limits.attribute_bytes(WRITER) - room - 12)})
    assert LIMIT - limits.message_bytes(body, WRITER) == room  # just under 1 MiB, as the writer accepted it
    fake.put(QUEUE, body, WRITER)

    first = await dead_letter_once(fake)
    assert as_received(first).error_type == "conveyor.message.Reject"
    # the operator redrives it (the client-side path): the record goes into the history, which the
    # redrive trims to fit the queue, so the message comes back filling it
    again = as_received(first)
    del fake.queues[DLQ].messages[first.message_id]
    fake.put(QUEUE, again.body, redriven_attributes(again, int(time.time() * 1000), LIMIT))

    second = await dead_letter_once(fake)
    record = as_received(second).record
    assert record is not None  # was: no record (`conveyor dlq peek`: "(no record)")
    assert record["error_type"] == "conveyor.message.Reject"
    assert second.body == body
    assert {name: second.attributes[name] for name in WRITER} == WRITER
    assert sizes(second) <= LIMIT


def lease_of(body: str, attributes: dict[str, Any]) -> Lease:
    return Lease("id-2", "h", body, attributes, {"ApproximateReceiveCount": "1"}, 0.0, 30.0)


def test_the_history_gives_way_oldest_first_to_the_record() -> None:
    history = [{"error_type": "builtins.ValueError", "error_message": f"attempt {n}: " + "e" * 300, "redriven_at": n}
               for n in range(3)]  # fmt: skip
    text = json.dumps(history, separators=(",", ":"))
    attributes = WRITER | {metadata.REDRIVE_HISTORY: {"DataType": "String", "StringValue": text}}
    body = "b" * (LIMIT - limits.attribute_bytes(attributes) - 10)  # no record fits beside the whole history

    copy = fitting_attributes(lease_of(body, attributes), DeadLetter(Reject("no"), exhausted=False), "q", LIMIT)

    record = json.loads(copy[metadata.DEAD_LETTER]["StringValue"])
    assert (record["error_type"], record["error_message"]) == ("conveyor.message.Reject", "no")  # the full record
    assert json.loads(copy[metadata.REDRIVE_HISTORY]["StringValue"]) == history[1:]  # without the oldest entry
    assert {name: copy[name] for name in WRITER} == WRITER
    assert limits.message_bytes(body, copy) <= LIMIT


def test_a_message_that_fills_the_limit_by_itself_is_copied_whole_without_a_record() -> None:
    """No record fits beside the user's own body and attributes, even without the (tiny) history:
    the copy is the message as received, as SQS's own redrive would move it, never cut."""
    attributes = WRITER | {metadata.REDRIVE_HISTORY: {"DataType": "String", "StringValue": "[{}]"}}
    body = "b" * (LIMIT - limits.attribute_bytes(attributes))

    copy = fitting_attributes(lease_of(body, attributes), DeadLetter(Reject("no"), exhausted=False), "q", LIMIT)

    assert copy == attributes
