"""The shipped test kit, as a user's tests use it: messages as the writer sends them, one handler's
outcome, and the whole stack in process."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

import conveyor
from conveyor import metadata
from conveyor.testing import InMemoryStack, make_message, run


def test_make_message_serialises_the_body_as_the_writer_does_and_sets_its_attributes() -> None:
    message = make_message(
        {"b": "é", "a": [1, 2.5]}, type="t", attributes={"tenant": "acme", "n": 3}, idempotency_key="k"
    )
    assert message.body == '{"b":"é","a":[1,2.5]}'
    assert message.attributes[metadata.TYPE] == "t"
    assert message.attributes[metadata.CONTENT_TYPE] == "application/json"
    assert message.attributes[metadata.IDEMPOTENCY_KEY] == "k"
    assert message.attributes["tenant"] == "acme"
    assert message.attributes["n"] == "3"
    assert message.request_id
    assert isinstance(message.sent_at, datetime)
    assert message.receive_count == 1
    assert message.group_id is None


def test_make_message_takes_a_string_body_as_it_is_and_fifo_ids() -> None:
    message = make_message("not json", message_id="m-1", group_id="g", receive_count=3)
    assert (message.body, message.message_id, message.group_id, message.receive_count) == ("not json", "m-1", "g", 3)
    assert message.deduplication_id
    assert metadata.TYPE not in message.attributes
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        make_message(float("nan"))


async def test_run_tells_each_outcome_of_a_plain_handler() -> None:
    async def handler(message: conveyor.Message) -> None:
        body = message.json()["do"]
        if body == "retry":
            raise conveyor.Retry(after=30)
        if body == "reject":
            raise conveyor.Reject("no")
        if body == "fail":
            raise KeyError("x")

    assert (await run(handler, make_message({"do": "ok"}))).action == "delete"
    retry = await run(handler, make_message({"do": "retry"}))
    assert (retry.action, retry.delay_seconds, type(retry.error)) == ("retry", 30, conveyor.Retry)
    rejected = await run(handler, make_message({"do": "reject"}))
    assert (rejected.action, rejected.error_type) == ("dead_letter", "conveyor.message.Reject")
    failed = await run(handler, make_message({"do": "fail"}, receive_count=2))
    assert (failed.action, failed.error_type) == ("retry", "builtins.KeyError")
    assert failed.delay_seconds in {1, 2}  # the second receive's backoff: 2 s with half of it jittered
    invalid = await run(handler, make_message("{oops"))
    assert invalid.error_type == "conveyor.message.InvalidJsonError"
    unlimited = await run(handler, make_message({"do": "fail"}, receive_count=50), max_receive_count=None)
    assert unlimited.action == "retry"


async def test_run_takes_sync_and_batch_handlers() -> None:
    def sync(message: conveyor.Message) -> None:
        raise conveyor.Reject("sync says no")

    @conveyor.batch_handler
    async def batch(messages: list[conveyor.Message]) -> conveyor.BatchFailures:
        return {m.message_id: conveyor.Retry(after=3) for m in messages}

    @conveyor.batch_handler
    async def wrong(messages: list[conveyor.Message]) -> conveyor.BatchFailures:
        return {"not-an-id": ValueError()}

    assert (await run(sync, make_message(1))).action == "dead_letter"
    assert (await run(batch, make_message(1))).delay_seconds == 3
    assert (await run(wrong, make_message(1))).error_type == "builtins.TypeError"


async def test_the_stack_posts_over_http_and_drains_through_the_engine() -> None:
    handled: list[str] = []

    async def handler(message: conveyor.Message) -> None:
        if message.json() == "bad":
            raise conveyor.Reject("bad one")
        handled.append(message.body)

    async with InMemoryStack(handler) as stack:
        for body in ("a", "bad", "c"):
            assert (await stack.writer.post("/messages", json={"body": body})).status_code == 202
        await stack.drain()
        assert sorted(handled) == ['"a"', '"c"']
        [dead] = stack.dead_letters
        assert dead.body == '"bad"'
        assert dead.record["error_message"] == "bad one"
        assert stack.queue == []


async def test_drain_says_what_is_left_when_a_message_waits_for_its_retry() -> None:
    async def later(message: conveyor.Message) -> None:
        raise conveyor.Retry(after=60)

    async with InMemoryStack(later) as stack:
        await stack.writer.post("/messages", json={"body": {"x": 1}})
        with pytest.raises(TimeoutError, match="still has 1 message"):
            await stack.drain(timeout=0.5)
        [left] = stack.queue
        assert json.loads(left.body) == {"x": 1}
        assert left.receive_count == 1


async def test_the_writer_of_a_stack_not_entered_says_so() -> None:
    stack = InMemoryStack(lambda message: None)
    with pytest.raises(RuntimeError, match="async with InMemoryStack"):
        _ = stack.writer
