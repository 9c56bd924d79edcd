"""`conveyor dlq redrive` against the in-memory SQS: the move task when it works, the client-side move
when it does not (as on LocalStack without a destination), and nothing lost on partial failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest

from conveyor import metadata
from conveyor.dlq.locate import Located
from conveyor.dlq.record import Filter
from conveyor.dlq.redrive import redrive
from conveyor.dlq.report import RedriveReport, Request
from conveyor.sqs.queues import QueueConfig
from conveyor.testing.sqs import InMemorySqs, as_client, client_error

EVERYTHING = Request(Filter(), None, dry_run=False)


class MoveTaskSqs(InMemorySqs):
    """The fake plus the calls redrive needs; the move task ends as ``task_status`` says (FAILED like
    LocalStack's without a destination, holding one message in flight as LocalStack does). An
    ENDLESS task moves what reaches the DLQ, one message a poll, until it is cancelled (a task that
    runs until the DLQ is empty, while a processor fails what it moves)."""

    def __init__(self, task_status: str = "FAILED", start_error: BaseException | None = None) -> None:
        super().__init__()
        self.task_status = task_status
        self.start_error = start_error
        self.statuses: list[str] = []

    async def list_dead_letter_source_queues(self, QueueUrl: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        dlq = self.queue(QueueUrl)
        sources = [q.url for q in self.queues.values() if dlq.arn in q.attributes.get("RedrivePolicy", "")]
        return {"queueUrls": sources}

    async def start_message_move_task(self, SourceArn: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        self._record("StartMessageMoveTask", {"SourceArn": SourceArn, **kwargs})
        if self.start_error is not None:
            raise self.start_error
        source = next(q for q in self.queues.values() if q.arn == SourceArn)
        self.to_move = len(source.messages)
        self.task = (source, next(q for q in self.queues.values() if q.arn == kwargs["DestinationArn"]))
        self.moved = 0
        if self.task_status == "ENDLESS":
            self.statuses = ["RUNNING"]
            return {"TaskHandle": "t"}
        if self.task_status == "COMPLETED":
            target = next(q for q in self.queues.values() if q.arn == kwargs["DestinationArn"])
            target.messages.update(source.messages)
            source.messages.clear()
        else:
            next(iter(source.messages.values())).visible_at = self._now() + 600  # held by the failed task
        self.statuses = ["RUNNING", self.task_status]
        return {"TaskHandle": "t"}

    async def cancel_message_move_task(self, TaskHandle: str) -> dict[str, Any]:  # noqa: N803
        self._record("CancelMessageMoveTask", {"TaskHandle": TaskHandle})
        self.statuses = ["CANCELLED"]
        return {"ApproximateNumberOfMessagesMoved": self.moved}

    async def list_message_move_tasks(self, SourceArn: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        source, target = self.task
        if status == "RUNNING" and self.task_status == "ENDLESS" and source.messages:
            message = source.messages.pop(next(iter(source.messages)))
            self._store(target, message.body, message.attributes, message.group_id, 0)  # a new message
            self.moved += 1
        moved = self.to_move if status == "COMPLETED" else self.moved
        result = {"Status": status, "ApproximateNumberOfMessagesMoved": moved,
                  "ApproximateNumberOfMessagesToMove": self.to_move, "SourceArn": SourceArn}  # fmt: skip
        if status == "FAILED":
            result["FailureReason"] = "AttributeError"
        return {"Results": [result]}

    async def get_queue_attributes(self, QueueUrl: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        answer = await super().get_queue_attributes(QueueUrl, **kwargs)
        now = self._now()
        hidden = sum(1 for m in self.queue(QueueUrl).messages.values() if m.visible_at > now)
        answer["Attributes"]["ApproximateNumberOfMessagesNotVisible"] = str(hidden)
        return answer


def setup(fake: MoveTaskSqs, bodies: list[tuple[str | None, str | None]], *, max_bytes: int = 1_048_576) -> Located:
    """``orders`` (its MaximumMessageSize ``max_bytes``) and its DLQ holding ``bodies`` (error type, or
    None for no record)."""
    queue = fake.create("orders", max_receive_count=3, MaximumMessageSize=str(max_bytes))
    dlq = fake.queues["orders-dlq"]
    for error_type, source in bodies:
        attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
        if error_type:
            record = {"error_type": error_type, "error_message": "x", "source_queue": source or queue.url,
                      "dead_lettered_at": int(time.time() * 1000)}  # fmt: skip
            attributes[metadata.DEAD_LETTER] = {"DataType": "String", "StringValue": json.dumps(record)}
        fake.put("orders-dlq", json.dumps({"error": error_type}), attributes)
    config = QueueConfig(queue.url, queue.arn, max_bytes, 30, False, False, dlq.arn, 3)
    return Located("orders", config, "orders-dlq", dlq.url, dlq.arn)


async def no_sleep(_: float) -> None:
    return None


async def run(fake: MoveTaskSqs, located: Located, request: Request = EVERYTHING) -> tuple[RedriveReport, list[str]]:
    lines: list[str] = []
    report = await redrive(as_client(fake), located, request, lines.append, sleep=no_sleep)
    return report, lines


def bodies_on(fake: InMemorySqs, name: str) -> list[str]:
    return sorted(m.body for m in fake.queues[name].messages.values())


async def test_the_move_task_does_it_when_it_completes() -> None:
    fake = MoveTaskSqs("COMPLETED")
    located = setup(fake, [("builtins.ValueError", None), (None, None)])
    report, lines = await run(fake, located)
    assert (report.moved, report.failed, report.method) == (2, 0, "SQS move task (StartMessageMoveTask)")
    assert lines == ["move task RUNNING: 0 of 2 moved", "move task COMPLETED: 2 of 2 moved"]
    [(_, start)] = [c for c in fake.calls if c[0] == "StartMessageMoveTask"]
    assert start == {"SourceArn": located.dlq_arn, "DestinationArn": located.queue.arn}
    assert fake.count("SendMessageBatch") == 0
    assert len(fake.queues["orders"].messages) == 2


async def test_a_failed_move_task_falls_back_to_the_client_side_move() -> None:
    # GIVEN a server whose move task ends FAILED, holding one message in flight
    fake = MoveTaskSqs("FAILED")
    located = setup(fake, [("builtins.ValueError", None)] * 3)
    report, lines = await run(fake, located)
    # THEN the client-side move takes the two it can see, and the report says what happened
    assert "move task FAILED (AttributeError): falling back to the client-side move" in lines
    assert (report.moved, report.skipped, report.failed) == (2, 0, 0)
    assert report.method == "client-side move, after the move task failed"
    assert report.notes == [
        "1 message(s) of orders-dlq are in flight (held by the failed move task or another reader) and were not "
        "looked at: run the redrive again once they are visible"
    ]
    assert len(fake.queues["orders"].messages) == 2
    assert len(fake.queues["orders-dlq"].messages) == 1


async def test_a_refused_move_task_falls_back() -> None:
    fake = MoveTaskSqs(start_error=client_error("UnsupportedOperation", "StartMessageMoveTask"))
    located = setup(fake, [("builtins.ValueError", None), (None, None)])
    report, lines = await run(fake, located)
    assert (
        lines[0]
        == "StartMessageMoveTask refused: UnsupportedOperation (injected): falling back to the client-side move"
    )
    assert report.moved == 2
    assert bodies_on(fake, "orders") == ['{"error": "builtins.ValueError"}', '{"error": null}']
    assert fake.queues["orders-dlq"].messages == {}


async def test_a_filter_never_uses_the_move_task_and_leaves_the_rest_visible() -> None:
    fake = MoveTaskSqs("COMPLETED")
    located = setup(fake, [("builtins.ValueError", None), ("builtins.KeyError", None), (None, None)])
    report, _ = await run(fake, located, Request(Filter(("ValueError",)), None, dry_run=False))
    assert fake.count("StartMessageMoveTask") == 0
    assert (report.moved, report.skipped) == (1, 2)
    assert bodies_on(fake, "orders") == ['{"error": "builtins.ValueError"}']
    # what was skipped is visible again at once
    left = fake.queues["orders-dlq"].messages.values()
    now = asyncio.get_running_loop().time()
    assert [(m.visible_at <= now, m.receive_count) for m in left] == [(True, 1), (True, 1)]
    visibility_zero = [e for op, kw in fake.calls if op == "ChangeMessageVisibilityBatch" for e in kw["Entries"]]
    assert [e["VisibilityTimeout"] for e in visibility_zero] == [0, 0]


async def test_a_source_that_does_not_use_this_dlq_is_refused() -> None:
    fake = MoveTaskSqs()
    fake.create("elsewhere", max_receive_count=None)
    located = setup(fake, [("builtins.ValueError", fake.queues["elsewhere"].url), ("builtins.ValueError", None)])
    report, lines = await run(fake, located, Request(Filter(("ValueError",)), None, dry_run=False))
    assert (report.moved, report.failed) == (1, 1)
    assert any("its source queue elsewhere does not send to this dead-letter queue" in line for line in lines)
    assert fake.queues["elsewhere"].messages == {}
    assert len(fake.queues["orders-dlq"].messages) == 1


async def test_an_entry_sqs_refuses_stays_on_the_dlq() -> None:
    fake = MoveTaskSqs()
    located = setup(fake, [("builtins.ValueError", None)] * 2)
    refuse_first = iter([True, False])
    fake.fail_entries["SendMessageBatch"] = lambda entry: (
        {"Code": "InvalidMessageContents", "SenderFault": True, "Message": "no"} if next(refuse_first) else None
    )
    report, lines = await run(fake, located, Request(Filter(("ValueError",)), None, dry_run=False))
    assert (report.moved, report.failed) == (1, 1)
    assert any("not sent to orders: InvalidMessageContents (no)" in line for line in lines)
    assert (len(fake.queues["orders"].messages), len(fake.queues["orders-dlq"].messages)) == (1, 1)


async def test_a_delete_that_fails_after_the_send_is_reported_as_a_duplicate() -> None:
    fake = MoveTaskSqs()
    located = setup(fake, [("builtins.ValueError", None)])
    fake.fail_calls["DeleteMessageBatch"].append(client_error("ServiceUnavailable", "DeleteMessageBatch", 503))
    report, lines = await run(fake, located, Request(Filter(("ValueError",)), None, dry_run=False))
    assert (report.moved, report.failed) == (0, 1)
    assert "but not deleted from the DLQ (it is on both now): ServiceUnavailable" in lines[-1]
    assert (len(fake.queues["orders"].messages), len(fake.queues["orders-dlq"].messages)) == (1, 1)


@pytest.mark.parametrize("limit", [1, 2])
async def test_limit_and_dry_run(limit: int) -> None:
    fake = MoveTaskSqs()
    located = setup(fake, [("builtins.ValueError", None)] * 3)
    dry, lines = await run(fake, located, Request(Filter(), limit, dry_run=True))
    assert dry.moved == limit
    assert sum(line.startswith("would move") for line in lines) == limit
    assert fake.queues["orders"].messages == {}
    report, _ = await run(fake, located, Request(Filter(), limit, dry_run=False))
    assert report.moved == limit
    assert len(fake.queues["orders"].messages) == limit
    assert fake.count("StartMessageMoveTask") == 0


@pytest.mark.parametrize(("queue_bytes", "body_bytes"), [(1_048_576, 200_000), (262_144, 30_000)])
async def test_dead_letters_too_large_for_one_batch_are_sent_in_several(queue_bytes: int, body_bytes: int) -> None:
    # GIVEN ten dead letters that each fit the queue, but not all ten in one SendMessageBatch
    fake = MoveTaskSqs()
    located = setup(fake, [], max_bytes=queue_bytes)
    bodies = [f"{n}" + "x" * (body_bytes - 1) for n in range(10)]
    for body in bodies:
        record = {"error_type": "builtins.ValueError", "dead_lettered_at": int(time.time() * 1000)}
        fake.put("orders-dlq", body, {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record)}})
    # WHEN they are redriven by the client-side move
    report, lines = await run(fake, located, Request(Filter(("ValueError",)), None, dry_run=False))
    # THEN all ten are back on the queue and gone from the DLQ
    assert (report.moved, report.failed) == (10, 0), lines
    assert bodies_on(fake, "orders") == sorted(bodies)
    assert fake.queues["orders-dlq"].messages == {}


async def rejecting_processor(fake: InMemorySqs, queue_name: str, *, clock_behind_ms: int = 0) -> None:
    """A processor whose handler rejects every message: each one it receives is dead-lettered as the
    processor does it, a new message (a new id) on the DLQ with a fresh record, then deleted. With
    ``clock_behind_ms``, SQS stamps the copies by a clock that far behind the redrive's."""
    queue = fake.queues[queue_name]
    dlq = fake.queues[queue_name.removesuffix(".fifo") + "-dlq" + (".fifo" if queue_name.endswith(".fifo") else "")]
    while True:
        received = await fake.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"],
        )  # fmt: skip
        for raw in received.get("Messages", []):
            attributes = {k: v for k, v in raw.get("MessageAttributes", {}).items() if k != metadata.DEAD_LETTER}
            record = {"error_type": "conveyor.message.Reject", "error_message": "no", "source_queue": queue.url,
                      "original_message_id": raw["MessageId"], "dead_lettered_at": int(time.time() * 1000)}  # fmt: skip
            attributes[metadata.DEAD_LETTER] = {"DataType": "String", "StringValue": json.dumps(record)}
            group = raw["Attributes"].get("MessageGroupId")
            extra = {"MessageGroupId": group, "MessageDeduplicationId": raw["MessageId"]} if group else {}
            sent = await fake.send_message(
                QueueUrl=dlq.url, MessageBody=raw["Body"], MessageAttributes=attributes, **extra
            )
            dlq.messages[sent["MessageId"]].sent_ms -= clock_behind_ms
            await fake.delete_message_batch(
                QueueUrl=queue.url, Entries=[{"Id": "0", "ReceiptHandle": raw["ReceiptHandle"]}]
            )


def setup_fifo(fake: MoveTaskSqs, groups: list[str]) -> Located:
    """``orders.fifo`` and its DLQ holding one rejected message per entry of ``groups`` (its group)."""
    queue = fake.create("orders.fifo", max_receive_count=3)
    dlq = fake.queues["orders-dlq.fifo"]
    for n, group in enumerate(groups):
        record = {"error_type": "conveyor.message.Reject", "source_queue": queue.url,
                  "dead_lettered_at": int(time.time() * 1000)}  # fmt: skip
        attributes = {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record)}}
        fake.put("orders-dlq.fifo", json.dumps({"n": n}), attributes, group=group)
    config = QueueConfig(queue.url, queue.arn, 1_048_576, 30, True, False, dlq.arn, 3)
    return Located("orders.fifo", config, "orders-dlq.fifo", dlq.url, dlq.arn)


@pytest.mark.parametrize("kind", ["standard", "fifo", "after a failed move task", "SQS's clock behind"])
async def test_a_redrive_ends_while_the_processor_keeps_failing_what_it_moves(kind: str) -> None:
    # GIVEN three poison messages on the DLQ, and a processor that rejects every message again
    fake = MoveTaskSqs("FAILED")  # the move task, when tried, ends FAILED holding one message
    if kind == "fifo":
        located, request = setup_fifo(fake, ["g", "g", "h"]), Request(Filter(("Reject",)), None, dry_run=False)
    else:
        located = setup(fake, [("conveyor.message.Reject", None)] * 3)
        request = EVERYTHING if kind == "after a failed move task" else Request(Filter(("Reject",)), None, False)
    behind = 600_000 if kind == "SQS's clock behind" else 0  # the copies look older than the start
    processor = asyncio.create_task(rejecting_processor(fake, located.name, clock_behind_ms=behind))
    try:
        # WHEN they are redriven: each comes back to the DLQ under a new id while the redrive runs
        async with asyncio.timeout(15):  # it used to move the copies again, for ever
            report, lines = await run(fake, located, request)
        # THEN the redrive read the DLQ through once: each message it found moved once, no copy again
        expected = 2 if kind == "after a failed move task" else 3  # the failed task holds one
        assert report.moved == expected
        assert sum(line.startswith("moved ") for line in lines) == expected
        dlq, queue = fake.queues[located.dlq_name], fake.queues[located.name]
        deadline = asyncio.get_running_loop().time() + 10
        while queue.messages or len(dlq.messages) < 3:  # the processor dead-letters the last copies
            assert asyncio.get_running_loop().time() < deadline, (len(queue.messages), len(dlq.messages))
            await asyncio.sleep(0.01)
        histories = [m.attributes.get(metadata.REDRIVE_HISTORY) for m in dlq.messages.values()]
        redriven = [len(json.loads(h["StringValue"])) for h in histories if h is not None]
        assert redriven == [1] * expected  # redriven once each (the held one not at all)
    finally:
        processor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await processor


async def test_a_message_with_attributes_kept_in_its_record_goes_back_whole() -> None:
    # GIVEN the DLQ of a whole redrive (the move task would run) holding a message that had ten
    # attributes: the processor kept the tenth inside its record, for lack of an attribute slot
    fake = MoveTaskSqs("COMPLETED")
    located = setup(fake, [(None, None)])
    user = {f"a{n}": {"DataType": "String", "StringValue": f"v{n}"} for n in range(9)}
    tenth = {"a9": {"DataType": "String", "StringValue": "v9"}}
    record = {"error_type": "conveyor.message.Reject", "source_queue": fake.queues["orders"].url,
              "dead_lettered_at": int(time.time() * 1000), "overflow_attributes": tenth}  # fmt: skip
    fake.put(
        "orders-dlq", "ten", user | {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record)}}
    )
    # WHEN everything is redriven
    report, lines = await run(fake, located)
    # THEN it is back as it was sent: ten attributes, no dead-letter record (the record in its history)
    assert (report.moved, report.failed) == (2, 0), lines
    [back] = [m for m in fake.queues["orders"].messages.values() if m.body == "ten"]
    assert metadata.DEAD_LETTER not in back.attributes
    assert back.attributes == user | tenth
    assert fake.queues["orders-dlq"].messages == {}


async def test_older_than_does_not_move_what_sqs_moved_a_moment_ago_though_sent_long_ago() -> None:
    # GIVEN on the DLQ a message dead-lettered two hours ago by the processor, and one sent two hours
    # ago that SQS's redrive policy moved just now (maxReceiveCount 3: the fourth receive moves it)
    fake = MoveTaskSqs()
    located = setup(fake, [])
    record = {"error_type": "builtins.ValueError", "dead_lettered_at": int(time.time() * 1000) - 7_200_000}
    fake.put("orders-dlq", "old", {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record)}})
    moved_id = fake.put("orders", "just moved")
    fake.queues["orders"].messages[moved_id].sent_ms -= 7_200_000
    for _ in range(4):
        await fake.receive_message(QueueUrl=located.queue.url, VisibilityTimeout=0)
    assert moved_id in fake.queues["orders-dlq"].messages
    # WHEN a dry run asks for those older than an hour
    report, lines = await run(fake, located, Request(Filter(older_than=3600), None, dry_run=True))
    # THEN only the processor's dead letter would move; the other is skipped, saying why
    assert (report.moved, report.skipped) == (1, 1), lines
    assert f"skipped  {moved_id}  (no record): when it reached the DLQ is not known" in lines


async def test_a_move_task_that_moves_what_comes_back_is_cancelled() -> None:
    # GIVEN a move task that runs until the DLQ is empty, and a processor that rejects every message
    fake = MoveTaskSqs("ENDLESS")
    located = setup(fake, [("conveyor.message.Reject", None)] * 3)
    processor = asyncio.create_task(rejecting_processor(fake, located.name))
    lines: list[str] = []
    try:
        # WHEN everything is redriven
        async with asyncio.timeout(15):  # it used to watch the task for ever
            report = await redrive(as_client(fake), located, EVERYTHING, lines.append,
                                   sleep=lambda _: asyncio.sleep(0.01))  # fmt: skip
    finally:
        processor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await processor
    # THEN the task is cancelled once it has moved more than the DLQ held, and the run ends
    assert fake.count("CancelMessageMoveTask") == 1
    assert any(line.startswith("move task moved 4, more than the 3 the DLQ held") for line in lines), lines
    assert report.method == "client-side move, after the move task failed"
    assert report.failed == 0
