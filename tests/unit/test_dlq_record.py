"""Dead-letter records, the redrive filters, and what a redriven message carries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor import metadata
from conveyor.dlq.record import MAX_HISTORY, DeadLettered, Filter, error_type_matches, exported, redriven_attributes
from conveyor.sqs import limits

NOW = 1_800_000_000_000


def message(
    record: dict[str, Any] | None = None, *, sent_ms: int = NOW, user: dict[str, str] | None = None
) -> DeadLettered:
    attrs = {name: {"DataType": "String", "StringValue": value} for name, value in (user or {}).items()}
    if record is not None:
        attrs[metadata.DEAD_LETTER] = {"DataType": "String", "StringValue": json.dumps(record)}
    raw = {
        "MessageId": "m-1",
        "ReceiptHandle": "h-1",
        "Body": '{"order": 42}',
        "MessageAttributes": attrs,
        "Attributes": {"SentTimestamp": str(sent_ms), "ApproximateReceiveCount": "3"},
    }
    return DeadLettered.from_sqs(raw)


def record(error_type: str = "builtins.ValueError", at: int = NOW) -> dict[str, Any]:
    return {
        "error_type": error_type, "error_message": "bad amount", "original_message_id": "o-1", "receive_count": 5,
        "retries_exhausted": True, "source_queue": "http://sqs/queue/orders", "dead_lettered_at": at,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("recorded", "wanted", "matches"),
    [
        ("builtins.ValueError", "ValueError", True),
        ("builtins.ValueError", "builtins.ValueError", True),
        ("myapp.errors.Outer.Inner", "Inner", True),
        ("myapp.errors.Outer.Inner", "Outer.Inner", True),
        ("builtins.ValueError", "Error", False),  # a class name, not a suffix of one
        ("builtins.ValueError", "valueerror", False),
        ("builtins.ValueError", "KeyError", False),
        (None, "ValueError", False),
    ],
)
def test_error_type_matches_the_class_name_or_the_qualified_name(
    recorded: str | None, wanted: str, matches: bool
) -> None:
    assert error_type_matches(recorded, wanted) is matches


def test_filters() -> None:
    value, key, bare = message(record()), message(record("builtins.KeyError")), message()
    assert Filter().empty
    assert all(Filter().matches(m, NOW) for m in (value, key, bare))
    by_type = Filter(("ValueError", "conveyor.message.Reject"))
    assert [by_type.matches(m, NOW) for m in (value, key, bare)] == [True, False, False]
    old = message(record(at=NOW - 7_200_000))
    older = Filter(older_than=3600)
    assert [older.matches(m, NOW) for m in (value, old)] == [False, True]
    # without a record, when it reached the DLQ is not known: its SentTimestamp is when it was first
    # sent, which says nothing of when SQS's redrive policy moved it
    assert not older.matches(message(sent_ms=NOW - 7_200_000), NOW)
    assert Filter(older_than=0).matches(message(sent_ms=NOW - 7_200_000), NOW)
    assert not Filter(("ValueError",), 3600).matches(value, NOW)


def test_the_record_and_what_is_known_without_one() -> None:
    with_record, without = message(record(), user={"tenant": "acme"}), message()
    assert with_record.summary() == "builtins.ValueError: bad amount"
    assert with_record.source_queue == "http://sqs/queue/orders"
    assert with_record.user_attributes() == {"tenant": {"DataType": "String", "StringValue": "acme"}}
    assert without.record is None
    assert without.summary() == "(no conveyor.dead_letter record: moved by SQS's redrive policy)"
    assert without.receive_count == 3
    assert without.dead_lettered_at_ms == NOW
    sqs_moved = DeadLettered.from_sqs(
        {"MessageId": "m", "ReceiptHandle": "h", "Attributes": {"DeadLetterQueueSourceArn": "arn:aws:sqs:r:1:orders"}}
    )
    assert sqs_moved.source_queue == "arn:aws:sqs:r:1:orders"
    unreadable = DeadLettered.from_sqs({"MessageId": "m", "ReceiptHandle": "h", "MessageAttributes": {
        metadata.DEAD_LETTER: {"DataType": "String", "StringValue": "not json"}}})  # fmt: skip
    assert unreadable.record == {"unreadable": "not json"}
    assert unreadable.error_type is None


def test_redriven_attributes_move_the_record_into_the_history() -> None:
    attributes = redriven_attributes(message(record(), user={"tenant": "acme"}), NOW + 5, limits.MAX_MESSAGE_BYTES)
    assert set(attributes) == {"tenant", metadata.REDRIVE_HISTORY}
    [entry] = json.loads(attributes[metadata.REDRIVE_HISTORY]["StringValue"])
    assert entry == record() | {"redriven_at": NOW + 5}


def test_the_history_grows_across_redrives_and_keeps_the_latest() -> None:
    earlier = [record(at=n) | {"redriven_at": n} for n in range(MAX_HISTORY)]
    again = message(record(), user={metadata.REDRIVE_HISTORY: json.dumps(earlier)})
    history = json.loads(
        redriven_attributes(again, NOW, limits.MAX_MESSAGE_BYTES)[metadata.REDRIVE_HISTORY]["StringValue"]
    )
    assert len(history) == MAX_HISTORY
    assert history[-1]["dead_lettered_at"] == NOW
    assert history[0]["dead_lettered_at"] == 1  # the oldest went


def test_the_history_yields_to_the_size_limit_and_to_the_users_attributes() -> None:
    dead = message(record(), user={"tenant": "acme"})
    exact = limits.message_bytes(dead.body, dead.user_attributes())
    assert redriven_attributes(dead, NOW, exact) == dead.user_attributes()  # no room: no history
    full = message(record(), user={f"a{n}": "x" for n in range(10)})
    assert set(redriven_attributes(full, NOW, limits.MAX_MESSAGE_BYTES)) == {f"a{n}" for n in range(10)}


def test_no_record_means_no_history() -> None:
    assert redriven_attributes(message(user={"tenant": "acme"}), NOW, limits.MAX_MESSAGE_BYTES) == {
        "tenant": {"DataType": "String", "StringValue": "acme"}
    }


def test_export_keeps_everything_needed_to_send_it_again() -> None:
    raw = {
        "MessageId": "m",
        "ReceiptHandle": "h",
        "Body": "b",
        "MessageAttributes": {"blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
        "Attributes": {"SentTimestamp": "1"},
    }
    assert exported(DeadLettered.from_sqs(raw)) == {
        "message_id": "m",
        "body": "b",
        "attributes": {"blob": {"DataType": "Binary", "BinaryValue": "AAE="}},
        "system_attributes": {"SentTimestamp": "1"},
        "dead_letter": None,
        "payload": None,  # its body is the payload (not an S3 pointer)
    }


def test_a_redrive_puts_back_the_attributes_kept_inside_the_record() -> None:
    # GIVEN a message that had ten attributes: the processor kept the tenth (binary) in its record
    user = {f"a{n}": "v" for n in range(9)}
    kept = record() | {"overflow_attributes": {"blob": {"DataType": "Binary.gz", "BinaryValue": "AP8="}}}
    attributes = redriven_attributes(message(kept, user=user), NOW, limits.MAX_MESSAGE_BYTES)
    # THEN all ten go back as attributes (no room is left for the history, and none is needed)
    assert attributes["blob"] == {"DataType": "Binary.gz", "BinaryValue": b"\x00\xff"}
    assert set(attributes) == {*user, "blob"}


def test_older_than_does_not_age_what_sqs_moved_by_its_first_send() -> None:
    # GIVEN messages sent two hours ago that SQS's redrive policy moved a moment ago: SQS keeps their
    # SentTimestamp and ApproximateFirstReceiveTimestamp, and records the source queue
    moved = {"SentTimestamp": str(NOW - 7_200_000), "ApproximateFirstReceiveTimestamp": str(NOW - 7_190_000),
             "ApproximateReceiveCount": "6", "DeadLetterQueueSourceArn": "arn:aws:sqs:r:1:orders"}  # fmt: skip
    bare = DeadLettered.from_sqs({"MessageId": "m", "ReceiptHandle": "h", "Attributes": moved})
    # one of them redriven before by SQS's move task, with the record of its first dead-lettering
    earlier = {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record(at=NOW - 7_000_000))}}
    stale = DeadLettered.from_sqs({"MessageId": "n", "ReceiptHandle": "h", "Attributes": moved,
                                   "MessageAttributes": earlier})  # fmt: skip
    # THEN neither is older than an hour as far as --older-than knows; a record of the processor's is
    older = Filter(older_than=3600)
    assert [older.matches(m, NOW) for m in (bare, stale)] == [False, False]
    assert older.matches(message(record(at=NOW - 7_200_000)), NOW)
