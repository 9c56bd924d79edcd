"""The processor's side of the canary, in the engine against the in-memory SQS: a valid canary is
answered on the canary queue and deleted, and never reaches the handler or the handler's metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from conveyor import Message
from conveyor.canary.wire import Canary, canary_body, parse_reply
from conveyor.message import BatchFailures, batch_handler
from conveyor.processor.engine import Engine
from conveyor.processor.engine.canary_reply import CanaryConfig, CanaryResponder
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.processor.user_code import BatchHandler
from conveyor.testing.sqs import InMemorySqs, as_client, client_error
from tests.unit.engine_support import QUEUE, config_for, left, started, until

SECRET = b"unit-test-canary-secret"
CANARY_QUEUE = "work-canary"


@pytest.fixture
def fake() -> InMemorySqs:
    sqs = InMemorySqs()
    sqs.create(QUEUE)
    sqs.create(CANARY_QUEUE, max_receive_count=None)
    return sqs


def canary_text(secret: bytes = SECRET, at_ms: int | None = None) -> tuple[str, str]:
    canary = Canary(uuid.uuid4().hex, at_ms if at_ms is not None else int(time.time() * 1000))
    return canary.id, json.dumps(canary_body(secret, canary), separators=(",", ":"))


def sample(metrics: ProcessorMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


@asynccontextmanager
async def engine_with_canary(
    fake: InMemorySqs, handler: Callable[[Message], Awaitable[None]] | BatchHandler, **overrides: object
) -> AsyncIterator[Engine]:
    metrics = ProcessorMetrics()
    config = CanaryConfig(SECRET, fake.queues[CANARY_QUEUE].url, "unit-processor", retry_seconds=0)
    responder = CanaryResponder(as_client(fake), config, metrics.registry)
    engine = Engine(as_client(fake), config_for(fake, **overrides), handler, metrics=metrics, canary=responder)
    async with started(engine):
        yield engine


async def test_a_canary_is_answered_and_deleted_without_the_handler(fake: InMemorySqs) -> None:
    # GIVEN a valid canary and an ordinary message on the queue
    canary_id, body = canary_text()
    canary_message_id = fake.put(QUEUE, body)
    fake.put(QUEUE, '{"order": 1}')
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.body)

    # WHEN the processor runs
    async with engine_with_canary(fake, handler) as engine:
        await until(lambda: left(fake) == 0 and left(fake, CANARY_QUEUE) == 1)
    # THEN the handler saw only the ordinary message, and one signed reply names the canary
    assert seen == ['{"order": 1}']
    [reply_message] = fake.queues[CANARY_QUEUE].messages.values()
    reply = parse_reply(reply_message.body, SECRET)
    assert reply is not None
    assert (reply.id, reply.processor, reply.message_id) == (canary_id, "unit-processor", canary_message_id)
    assert reply.received_at_ms <= reply.handled_at_ms
    # AND the canary counts only in its own metric
    metrics = engine.metrics
    assert sample(metrics, "conveyor_processor_canaries_total", {"result": "answered"}) == 1
    assert sample(metrics, "conveyor_processor_succeeded_total") == 1
    assert sample(metrics, "conveyor_processor_handler_seconds_count") == 1


@pytest.mark.parametrize(
    "body",
    [
        canary_text(b"the-wrong-secret-x")[1],
        canary_text(at_ms=int(time.time() * 1000) - 11 * 60 * 1000)[1],
        canary_text()[1].replace('{"conveyor_canary"', '{"extra":1,"conveyor_canary"'),
    ],
    ids=["wrong secret", "too old", "extra key"],
)
async def test_what_only_looks_like_a_canary_reaches_the_handler(fake: InMemorySqs, body: str) -> None:
    fake.put(QUEUE, body)
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.body)

    async with engine_with_canary(fake, handler) as engine:
        await until(lambda: left(fake) == 0)
    assert seen == [body]
    assert left(fake, CANARY_QUEUE) == 0
    assert sample(engine.metrics, "conveyor_processor_canaries_total", {"result": "answered"}) == 0


async def test_a_reply_that_cannot_be_sent_leaves_the_canary_on_the_queue(fake: InMemorySqs) -> None:
    # GIVEN SQS refuses the first reply
    _, body = canary_text()
    fake.put(QUEUE, body)
    fake.fail_calls["SendMessage"].append(client_error("ServiceUnavailable", "SendMessage", 503))
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.body)

    async with engine_with_canary(fake, handler) as engine:
        # THEN the canary is not deleted: it comes back and the second reply goes out
        await until(lambda: left(fake) == 0 and left(fake, CANARY_QUEUE) == 1)
    assert seen == []
    assert fake.queues[QUEUE].deleted[0].receive_count == 2
    metrics = engine.metrics
    assert sample(metrics, "conveyor_processor_canaries_total", {"result": "reply_failed"}) == 1
    assert sample(metrics, "conveyor_processor_canaries_total", {"result": "answered"}) == 1
    assert sample(metrics, "conveyor_processor_retried_total") == 0


async def test_a_batch_handler_never_gets_the_canaries(fake: InMemorySqs) -> None:
    _, body = canary_text()
    fake.put(QUEUE, body)
    for n in range(3):
        fake.put(QUEUE, json.dumps({"n": n}))
    got: list[str] = []

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        got.extend(message.body for message in messages)
        return None

    async with engine_with_canary(fake, BatchHandler(handle)):
        await until(lambda: left(fake) == 0 and left(fake, CANARY_QUEUE) == 1)
    assert sorted(got) == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
