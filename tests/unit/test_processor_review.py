"""A second adversarial review of the processor (issue 16), each finding as a test: hung extensions,
leftover cancel requests, handlers that absorb cancellation or call sys.exit, a stop during a dead-letter
copy, attribute values in dead-letter copies, errors that cannot be printed."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from conveyor import BatchFailures, Message, Reject, batch_handler, metadata
from conveyor.processor.dead_letter import fitting_attributes
from conveyor.processor.engine import Engine
from conveyor.processor.lease import Lease
from conveyor.processor.outcome import DeadLetter
from conveyor.processor.user_code import BatchHandler
from conveyor.sqs import limits
from tests.fakes import FakeSqs, as_client
from tests.unit.engine_support import DLQ, QUEUE, config_for, left, running, until


@pytest.fixture
def fake() -> FakeSqs:
    sqs = FakeSqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


# --- R1: one extension call that hangs (a read timeout) blocks every later extension ------------------


async def test_an_extension_that_hangs_does_not_let_the_message_run_twice(fake: FakeSqs) -> None:
    fake.put(QUEUE, "slow")
    answer = fake.change_message_visibility_batch
    hung = False

    async def change(QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        nonlocal hung
        if not hung:  # one connection hangs until botocore's read timeout (30 s x 3 attempts in prod)
            hung = True
            await asyncio.sleep(2.5)
            raise ReadTimeoutError(endpoint_url="https://sqs")
        return await answer(QueueUrl=QueueUrl, Entries=Entries)

    fake.change_message_visibility_batch = change  # type: ignore[method-assign]
    runs, now, most = 0, 0, 0

    async def handler(message: Message) -> None:
        nonlocal runs, now, most
        runs, now = runs + 1, now + 1
        most = max(most, now)
        await asyncio.sleep(3)  # three visibility timeouts
        now -= 1

    async with running(fake, handler, visibility_timeout=1, pollers=2):
        await until(lambda: left(fake) == 0, timeout=10)
    assert (runs, most) == (1, 1)


# --- R2: a stale cancel request on the worker makes the next CancelledError kill the worker ---------


async def test_a_handler_that_cancelled_its_own_task_once_does_not_doom_its_worker(fake: FakeSqs) -> None:
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


# --- R3: a handler that absorbs the shutdown's cancellation hangs the stop forever --------------------


@pytest.mark.parametrize("absorb", ["raise-other", "return"])
async def test_a_handler_absorbing_the_shutdown_cancel_does_not_hang_the_stop(fake: FakeSqs, absorb: str) -> None:
    fake.put(QUEUE, "x")
    started = asyncio.Event()

    async def handler(message: Message) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if absorb == "raise-other":
                raise RuntimeError("interrupted") from None  # a library wrapping the cancel

    engine = Engine(as_client(fake), config_for(fake, shutdown_grace=0.2), handler)
    task = asyncio.create_task(engine.run())
    await until(started.is_set)
    engine.stop()
    done, _ = await asyncio.wait([task], timeout=5.2)  # grace + 5 s
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert done, "the graceful stop did not end within grace + 5 s"


# --- R4: grace ending while a batch's dead-letter copy is sent re-runs the batch's successes ---------


async def test_a_dead_letter_copy_outlasting_the_grace_does_not_rerun_the_batchs_successes(fake: FakeSqs) -> None:
    for body in ("bad", "ok1", "ok2"):
        fake.put(QUEUE, body)
    send = fake.send_message

    async def slow_send(**kwargs: Any) -> dict[str, Any]:
        await asyncio.sleep(3)  # SQS slow (botocore retrying a throttled SendMessage, say)
        return await send(**kwargs)

    fake.send_message = slow_send  # type: ignore[method-assign,assignment]
    handled = asyncio.Event()

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        handled.set()
        return {m.message_id: Reject("bad") for m in messages if m.body == "bad"}

    engine = Engine(as_client(fake), config_for(fake, shutdown_grace=0.5, visibility_timeout=10), BatchHandler(handle))
    task = asyncio.create_task(engine.run())
    await until(handled.is_set)
    engine.stop()
    await asyncio.wait_for(task, 5)
    # the handler returned success for ok1 and ok2: they must be deleted, not given back to run again
    assert sorted(m.body for m in fake.queues[QUEUE].deleted) == ["ok1", "ok2"]


# --- R5: the last-resort dead-letter copy drops the tenth attribute for nothing ---------------------


def test_a_copy_without_a_record_keeps_all_ten_originals() -> None:
    attributes: dict[str, Any] = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(9)}
    attributes["tenant"] = {"DataType": "String", "StringValue": "acme"}
    max_bytes = 2048
    body = "b" * (max_bytes - limits.attribute_bytes(attributes))  # exactly fits its queue (and the DLQ)
    lease = Lease("id-1", "h", body, attributes, {"ApproximateReceiveCount": "1"}, 0.0, 30.0)
    copy = fitting_attributes(lease, DeadLetter(Reject("no"), exhausted=False), "q", max_bytes)
    assert metadata.DEAD_LETTER not in copy  # no record fits: fine, SQS's redrive would do the same
    assert copy.keys() == attributes.keys()  # but the copy must not be worse than SQS's redrive


# --- R6: sys.exit() in a handler ends the process --------------------------------------------------


def test_a_handler_calling_sys_exit_is_a_failure_not_the_end_of_the_engine() -> None:
    fake = FakeSqs()
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


def test_a_redriven_copy_that_fails_again_keeps_its_tenth_attribute() -> None:
    attributes: dict[str, Any] = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(10)}
    first = Lease("id-1", "h", "body", attributes, {"ApproximateReceiveCount": "1"}, 0.0, 30.0)
    copy = fitting_attributes(first, DeadLetter(Reject("no"), exhausted=False), "q", 262_144)
    # the operator redrives the copy to the source; it fails again
    again = Lease("id-2", "h2", "body", dict(copy), {"ApproximateReceiveCount": "1"}, 0.0, 30.0)
    second = fitting_attributes(again, DeadLetter(Reject("no"), exhausted=False), "q", 262_144)
    record = json.loads(second[metadata.DEAD_LETTER]["StringValue"])
    assert "a9" in second or "a9" in record.get("overflow_attributes", {})


# --- R8b: an error that cannot even say what it is -----------------------------------------------


class UnprintableError(Exception):
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


async def test_an_error_that_cannot_be_printed_is_retried_then_dead_lettered(fake: FakeSqs) -> None:
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
