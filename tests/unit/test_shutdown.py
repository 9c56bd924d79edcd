"""The graceful stop against handlers that resist it: one that absorbs the cancellation, a
dead-letter copy outlasting the grace, a thread that cannot be stopped; and the default grace."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conveyor import BatchFailures, Message, Reject, batch_handler
from conveyor.processor.engine import Engine
from conveyor.processor.user_code import BatchHandler, adapt
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.unit.engine_support import QUEUE, config_for, sample, until


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE, max_receive_count=5)
    return sqs


# A handler that absorbs the shutdown's cancellation must not hang the stop.
@pytest.mark.parametrize("absorb", ["raise-other", "return"])
async def test_a_handler_absorbing_the_shutdown_cancel_does_not_hang_the_stop(fake: InMemorySqs, absorb: str) -> None:
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


# The grace ending while a batch's dead-letter copy is sent must not re-run the batch's successes.
async def test_a_dead_letter_copy_outlasting_the_grace_does_not_rerun_the_batchs_successes(fake: InMemorySqs) -> None:
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


# A plain function that outlives the grace: its thread cannot be stopped.
async def test_a_thread_handler_outliving_the_grace_is_not_released_and_does_not_block(fake: InMemorySqs) -> None:
    fake.put(QUEUE, "x")
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def handler(message: Message) -> None:
        started.set()
        release.wait(10)
        finished.set()

    with ThreadPoolExecutor(2) as pool:
        engine = Engine(
            as_client(fake), config_for(fake, shutdown_grace=0.2, visibility_timeout=5), adapt(handler, pool)
        )
        task = asyncio.create_task(engine.run())
        await until(started.is_set)
        engine.stop()
        await asyncio.wait_for(task, 3)
        # THEN the engine stopped while the thread still runs, and its message was not made visible
        assert not finished.is_set()
        [message] = fake.queues[QUEUE].messages.values()
        assert message.visible_at > asyncio.get_running_loop().time() + 3
        assert sample(engine, "conveyor_processor_released_total") == 0
        release.set()


def test_the_default_grace_fits_a_thirty_second_stop_timeout() -> None:
    from conveyor.settings import ProcessorSettings  # noqa: PLC0415 - read the default as users get it

    settings = ProcessorSettings()
    assert settings.shutdown_grace_seconds + 6 < 30  # 1 s poll drain, final flush of deletes
