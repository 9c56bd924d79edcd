"""Whatever a handler does is its message's failure, never the end of a worker or of the engine:
sys.exit, CancelledError, a stale cancel request, a batch result naming unknown ids."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor import BatchFailures, Message, batch_handler
from conveyor.processor.user_code import adapt
from conveyor.testing.sqs import InMemorySqs
from tests.unit.engine_support import QUEUE, left, running, sample, until


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


# A stale cancel request left on the worker must not make the next CancelledError kill the worker.
async def test_a_handler_that_cancelled_its_own_task_once_does_not_doom_its_worker(fake: InMemorySqs) -> None:
    for body in ("own-timeout", "cancel-me", "after"):
        fake.put(QUEUE, body)
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(message.body)
        if message.receive_count > 1:
            return
        if message.body == "own-timeout":  # the pre-3.11 timeout idiom: cancel() with no uncancel()
            asyncio.get_running_loop().call_later(0.01, asyncio.current_task().cancel)  # type: ignore[union-attr]
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                raise TimeoutError("took too long") from None
        if message.body == "cancel-me":
            raise asyncio.CancelledError  # item 7: awaiting a task someone else cancelled

    async with running(fake, handler, concurrency=1, retry_base_seconds=0, retry_max_seconds=0) as engine:
        try:
            await until(lambda: left(fake) == 0, timeout=3)
        except AssertionError:
            pytest.fail(f"worker gone: handled {calls}, {left(fake)} left, ready={engine.health.ready}")


# sys.exit() in a handler (a library calling it) must not end the process.
def test_a_handler_calling_sys_exit_is_a_failure_not_the_end_of_the_engine() -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    for body in ("exit", "after"):
        fake.put(QUEUE, body)
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(message.body)
        if message.body == "exit" and message.receive_count == 1:
            sys.exit(2)  # argparse / click deep in a library

    async def scenario() -> None:
        async with running(fake, handler, concurrency=1, retry_base_seconds=0, retry_max_seconds=0):
            await until(lambda: left(fake) == 0)

    try:
        asyncio.run(scenario())
    except SystemExit as exc:
        pytest.fail(f"SystemExit({exc.code}) from a handler ended the engine; handled {calls}, {left(fake)} left")


# A batch result naming ids that were not in the batch must not delete what it meant to fail.
async def test_a_batch_result_naming_unknown_ids_fails_the_whole_batch(fake: InMemorySqs) -> None:
    for i in range(3):
        fake.put(QUEUE, str(i))
    calls: list[list[int]] = []

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        calls.append(sorted(m.receive_count for m in messages))
        if len(calls) == 1:  # keyed by the user's own ids: not message ids of this batch
            return {f"order-{m.body}": RuntimeError("failed") for m in messages[:1]}
        return None

    with ThreadPoolExecutor(1) as pool:
        async with running(fake, adapt(handle, pool)):
            await until(lambda: left(fake) == 0)
    # THEN nothing was deleted after the malformed answer: every message came back once more
    assert calls[0] == [1, 1, 1]
    assert sorted(m.receive_count for m in fake.queues[QUEUE].deleted) == [2, 2, 2]


# A handler raising CancelledError itself fails its message; its worker lives on.
async def test_a_handler_raising_cancelled_error_is_a_failure_not_a_dead_worker(fake: InMemorySqs) -> None:
    for body in ("cancel-me", "after"):
        fake.put(QUEUE, body)
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(message.body)
        if message.body == "cancel-me" and message.receive_count == 1:
            raise asyncio.CancelledError  # e.g. awaiting a task someone else cancelled

    async with running(fake, handler, concurrency=1, retry_base_seconds=0, retry_max_seconds=0) as engine:
        await until(lambda: left(fake) == 0)
    assert sorted(calls) == ["after", "cancel-me", "cancel-me"]
    assert sample(engine, "conveyor_processor_retried_total") == 1
    assert sample(engine, "conveyor_processor_running") == 0


async def test_a_batch_handler_raising_cancelled_error_fails_its_batch(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    calls = 0

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError
        return None

    with ThreadPoolExecutor(1) as pool:
        async with running(fake, adapt(handle, pool), concurrency=1, retry_base_seconds=0, retry_max_seconds=0):
            await until(lambda: left(fake) == 0)
    assert calls == 2
