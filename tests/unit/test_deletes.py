"""Deletes SQS fails: retried until the visibility deadline, so the message is not handled again
and a dead-letter copy is not made twice."""

from __future__ import annotations

import pytest

from conveyor import Message, Reject
from conveyor.testing.sqs import InMemorySqs, client_error
from tests.unit.engine_support import DLQ, QUEUE, left, running, until


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


# A failed delete is retried: a lost delete means the message is handled again.
async def test_a_failed_delete_is_retried_not_handled_again(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    for _ in range(2):
        fake.fail_calls["DeleteMessageBatch"].append(client_error("ServiceUnavailable", "DeleteMessageBatch", 503))
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1

    async with running(fake, handler, visibility_timeout=3):
        await until(lambda: left(fake) == 0)
    assert calls == 1
    assert fake.count("DeleteMessageBatch") == 3


async def test_a_failed_delete_after_the_dead_letter_copy_leaves_one_copy(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    fake.fail_calls["DeleteMessageBatch"].append(client_error("ServiceUnavailable", "DeleteMessageBatch", 503))

    async def handler(message: Message) -> None:
        raise Reject("no")

    async with running(fake, handler, visibility_timeout=3):
        await until(lambda: left(fake) == 0)
    assert left(fake, DLQ) == 1
