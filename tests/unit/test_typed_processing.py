"""The processor's side of typed contracts: routing by ``conveyor.type``, the body decoded into the
type's model before the handler, and what never reaches a handler (an unknown type, a bad body),
through the shipped test kit and the real engine over the in-memory SQS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from pydantic import BaseModel

import conveyor
from conveyor import metadata
from conveyor.message import IDEMPOTENCY_MARK, IdempotencyOptions
from conveyor.processor.engine.dead_letter import fitting_attributes
from conveyor.processor.engine.lease import Lease
from conveyor.processor.engine.outcome import DeadLetter, RetryPolicy
from conveyor.processor.routing import router
from conveyor.testing import InMemoryStack, make_message, run
from tests import typed_app


@pytest.fixture(autouse=True)
def _no_calls_yet() -> Iterator[None]:
    typed_app.CALLS.clear()
    yield
    typed_app.CALLS.clear()


POLICY = RetryPolicy(base_seconds=1, max_seconds=10, max_receive_count=5, dead_letter_queue=True)
ORDER = {"order_id": "o-1", "amount": "12.50", "lines": [{"sku": "a", "quantity": 2}]}


async def test_a_typed_handler_gets_the_validated_model_and_the_message() -> None:
    message = make_message(ORDER, type="order.created")
    outcome = await run(typed_app.app, message)
    assert outcome.action == "delete"
    [(kind, order, given, _)] = typed_app.CALLS
    assert kind == "order.created"
    assert order == typed_app.OrderCreated(
        order_id="o-1", amount=Decimal("12.50"), lines=[typed_app.Line(sku="a", quantity=2)]
    )
    assert given is message


async def test_a_plain_function_handler_runs_in_a_worker_thread_with_its_model_only() -> None:
    outcome = await run(typed_app.app, make_message({"order_id": "o-2"}, type="order.cancelled"))
    assert outcome.action == "delete"
    [(kind, cancelled, given, thread)] = typed_app.CALLS
    assert (kind, cancelled, given) == ("order.cancelled", typed_app.OrderCancelled(order_id="o-2"), None)
    assert thread.startswith("handler")


@pytest.mark.parametrize(
    ("order_id", "action", "delay", "error_type"),
    [
        ("retry-me", "retry", 7, "conveyor.message.Retry"),
        ("reject-me", "dead_letter", None, "conveyor.message.Reject"),
        ("boom", "retry", 1, "builtins.RuntimeError"),
    ],
)
async def test_retry_reject_and_errors_work_as_with_untyped_handlers(
    order_id: str, action: str, delay: int | None, error_type: str
) -> None:
    outcome = await run(typed_app.app, make_message({"order_id": order_id, "amount": 1}, type="order.created"))
    assert (outcome.action, outcome.delay_seconds, outcome.error_type) == (action, delay, error_type)


async def test_a_retryable_error_on_the_last_receive_is_dead_lettered() -> None:
    message = make_message({"order_id": "boom", "amount": 1}, type="order.created", receive_count=5)
    outcome = await run(typed_app.app, message, max_receive_count=5)
    assert (outcome.action, outcome.error_type) == ("dead_letter", "builtins.RuntimeError")


@pytest.mark.parametrize(
    ("body", "type_name", "error_type"),
    [
        ({"order_id": "o-3"}, "order.created", "conveyor.InvalidMessageError"),  # amount missing
        ("{not json", "order.created", "conveyor.InvalidMessageError"),
        (ORDER, "order.refunded", "conveyor.UnknownMessageTypeError"),
        (ORDER, None, "conveyor.UnknownMessageTypeError"),  # no type, and the app has no default
    ],
)
async def test_what_does_not_match_is_dead_lettered_at_once_and_never_reaches_a_handler(
    body: Any, type_name: str | None, error_type: str
) -> None:
    outcome = await run(typed_app.app, make_message(body, type=type_name))
    assert (outcome.action, outcome.error_type) == ("dead_letter", error_type)
    assert typed_app.CALLS == []


async def test_a_default_handler_takes_the_messages_without_a_type() -> None:
    app = conveyor.App()
    seen: list[Any] = []

    class Ping(BaseModel):
        n: int

    @app.default
    async def ping(value: Ping) -> None:
        seen.append(value)

    assert (await run(app, make_message({"n": 3}))).action == "delete"
    assert (await run(app, make_message({"n": "x"}))).error_type == "conveyor.InvalidMessageError"
    assert seen == [Ping(n=3)]


async def test_typed_batch_handlers_get_their_models_and_messages_and_report_failures() -> None:
    app = conveyor.App()
    calls: list[tuple[list[typed_app.OrderCancelled], list[str]]] = []

    @app.handler("order.cancelled")
    @conveyor.batch_handler
    async def cancel_all(
        orders: list[typed_app.OrderCancelled], messages: list[conveyor.Message]
    ) -> conveyor.BatchFailures:
        calls.append((orders, [m.message_id for m in messages]))
        return {m.message_id: conveyor.Reject("no") for o, m in zip(orders, messages, strict=True) if o.reason == "x"}

    async with InMemoryStack(app) as stack:
        for reason in ("", "x", ""):
            answer = await stack.writer.post(
                "/messages", json={"type": "order.cancelled", "body": {"order_id": "c", "reason": reason}}
            )
            assert answer.status_code == 202
        stack.sqs.put(stack_queue(stack), '{"reason": 1}', {metadata.TYPE: text("order.cancelled")})
        await stack.drain()
        errors = sorted(d.error_type or "" for d in stack.dead_letters)
    assert errors == ["conveyor.InvalidMessageError", "conveyor.message.Reject"]
    assert sum(len(orders) for orders, _ in calls) == 3  # the invalid one never reached the handler
    assert all(isinstance(order, typed_app.OrderCancelled) for orders, _ in calls for order in orders)


def stack_queue(stack: InMemoryStack) -> str:
    return next(iter(stack.sqs.queues))


def text(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


async def test_messages_sent_past_the_writer_are_judged_by_the_same_model() -> None:
    async with InMemoryStack(typed_app.app) as stack:
        queue = stack_queue(stack)
        stack.sqs.put(queue, json.dumps(ORDER), {metadata.TYPE: text("order.created")})
        stack.sqs.put(queue, '{"order_id": 5, "amount": "lots"}', {metadata.TYPE: text("order.created")})
        stack.sqs.put(queue, json.dumps(ORDER), {metadata.TYPE: text("order.refunded")})
        await stack.drain()
        dead = {d.error_type: d for d in stack.dead_letters}
    assert [call[0] for call in typed_app.CALLS] == ["order.created"]
    invalid = dead["conveyor.InvalidMessageError"].record
    assert invalid["validation_errors"] == [
        {"field": "body.order_id", "message": "Input should be a valid string"},
        {"field": "body.amount", "message": "Input should be a valid decimal"},
    ]
    assert "lots" not in json.dumps(invalid)  # field paths and messages, never the values
    unknown = dead["conveyor.UnknownMessageTypeError"]
    assert unknown.record["error_message"] == "no handler for message type 'order.refunded'"
    assert unknown.body == json.dumps(ORDER)  # the body as it was, to redrive once a handler exists


def test_the_validation_errors_give_way_first_when_the_record_must_shrink() -> None:
    error = conveyor.InvalidMessageError("t", [{"field": f"body.f{i}", "message": "x" * 40} for i in range(20)])
    wire = {"MessageId": "m-1", "ReceiptHandle": "r", "Body": "b" * 500, "Attributes": {"ApproximateReceiveCount": "1"}}
    lease = Lease.from_sqs(wire, 0.0, 30.0)
    roomy = fitting_attributes(lease, DeadLetter(error, exhausted=False), "q", 1_048_576)
    tight = fitting_attributes(lease, DeadLetter(error, exhausted=False), "q", 1100)
    assert "validation_errors" in json.loads(roomy[metadata.DEAD_LETTER]["StringValue"])
    kept = json.loads(tight[metadata.DEAD_LETTER]["StringValue"])
    assert "validation_errors" not in kept
    assert kept["error_type"] == "conveyor.InvalidMessageError"


def test_each_types_idempotency_options_make_one_key_function() -> None:
    app = conveyor.App()

    @app.handler("by-order")
    @conveyor.idempotent(key=lambda message: json.loads(message.body)["order_id"])
    async def by_order(message: conveyor.Message) -> None: ...

    @app.handler("never")
    @conveyor.idempotent(enabled=False)
    async def never(message: conveyor.Message) -> None: ...

    @app.handler("plain")
    async def plain(message: conveyor.Message) -> None: ...

    with ThreadPoolExecutor(1) as pool:
        options: IdempotencyOptions = getattr(router(app, pool, POLICY), IDEMPOTENCY_MARK)
    assert options.enabled
    assert options.key is not None
    assert options.key(make_message({"order_id": "o-9"}, type="by-order")) == "by-order\x1fo-9"
    keyed = make_message(1, type="plain", idempotency_key="client-key")
    assert options.key(keyed) == "client-key"
    assert options.key(make_message(1, type="plain", message_id="m-7")) == "m-7"
    # turned off: a key of this delivery alone, so no other copy is ever taken for it
    first = make_message(1, type="never", message_id="m-8", receive_count=1)
    again = make_message(1, type="never", message_id="m-8", receive_count=2)
    assert options.key(first) != options.key(again)


def test_an_app_with_default_idempotency_keeps_the_writers_key() -> None:
    with ThreadPoolExecutor(1) as pool:
        options: IdempotencyOptions = getattr(router(typed_app.app, pool, POLICY), IDEMPOTENCY_MARK)
    assert options == IdempotencyOptions()


def test_an_app_that_turns_idempotency_off_everywhere_opens_no_store() -> None:
    app = conveyor.App()
    app.handler("x")(conveyor.idempotent(enabled=False)(lambda message: None))
    with ThreadPoolExecutor(1) as pool:
        options: IdempotencyOptions = getattr(router(app, pool, POLICY), IDEMPOTENCY_MARK)
    assert not options.enabled


class Strict(BaseModel):
    code: str

    @pydantic.model_validator(mode="after")
    def known(self) -> Strict:
        return {"EUR": self, "USD": self}[self.code]  # a KeyError on an unknown code, not a ValueError


def _batch_app(ran: list[str]) -> conveyor.App:
    app = conveyor.App()

    @app.handler("strict")
    async def strict(value: Strict, message: conveyor.Message) -> None:
        ran.append(message.message_id)

    @app.handler("many")
    @conveyor.batch_handler
    async def many(values: list[typed_app.OrderCancelled]) -> None: ...

    return app


async def test_a_validator_that_crashes_makes_its_body_invalid_not_its_batch_failed() -> None:
    ran: list[str] = []
    app = _batch_app(ran)
    single = await run(app, make_message({"code": "GBP"}, type="strict"))
    assert (single.action, single.error_type) == ("dead_letter", "conveyor.InvalidMessageError")
    assert single.error is not None
    assert "a validator of the model raised KeyError" in str(single.error)
    assert "GBP" not in str(single.error)
    async with InMemoryStack(app) as stack:
        queue = stack_queue(stack)
        stack.sqs.put(queue, '{"code": "GBP"}', {metadata.TYPE: text("strict")})
        for _ in range(4):
            stack.sqs.put(queue, '{"code": "EUR"}', {metadata.TYPE: text("strict")})
        await stack.drain()
        assert [d.error_type for d in stack.dead_letters] == ["conveyor.InvalidMessageError"]
    assert len(ran) == 4  # the others of its batch ran, once each


async def test_a_handler_raising_cancelled_error_fails_alone_in_a_batch_route() -> None:
    runs: dict[str, int] = {}
    app = conveyor.App()

    @app.handler("job")
    async def job(value: typed_app.OrderCancelled, message: conveyor.Message) -> None:
        runs[value.order_id] = runs.get(value.order_id, 0) + 1
        if value.order_id == "cancel-me" and runs[value.order_id] == 1:
            raise asyncio.CancelledError

    @app.handler("many")
    @conveyor.batch_handler
    async def many(values: list[typed_app.OrderCancelled]) -> None: ...

    async with InMemoryStack(app, retry_seconds=0) as stack:
        queue = stack_queue(stack)
        for order_id in ("a", "cancel-me", "b", "c"):
            stack.sqs.put(queue, json.dumps({"order_id": order_id}), {metadata.TYPE: text("job")})
        await stack.drain()
    assert runs == {"a": 1, "cancel-me": 2, "b": 1, "c": 1}


async def test_a_handler_raising_cancelled_error_is_a_retry_in_the_test_kit_too() -> None:
    async def handler(message: conveyor.Message) -> None:
        raise asyncio.CancelledError

    assert (await run(handler, make_message(1))).action == "retry"


class Step(BaseModel):
    n: int


@pytest.mark.parametrize("with_a_batch_type", [False, True])
async def test_a_fifo_group_runs_in_order_and_once_past_a_failure(with_a_batch_type: bool) -> None:
    # an app with a batch type routes whole batches: its plain handlers keep the group's order too
    calls: list[tuple[str, int]] = []
    app = conveyor.App()

    @app.handler("step")
    async def on_step(step: Step) -> None:
        calls.append(("step", step.n))
        if step.n == 1 and calls.count(("step", 1)) == 1:
            raise RuntimeError("transient")

    if with_a_batch_type:

        @app.handler("audit")
        @conveyor.batch_handler
        async def on_audit(steps: list[Step]) -> None:
            calls.extend(("audit", step.n) for step in steps)

    stack = InMemoryStack(app, queue_name="steps.fifo", retry_seconds=0)
    kinds = ["step", "step", "audit", "step"] if with_a_batch_type else ["step"] * 4
    for n, kind in enumerate(kinds):  # on the queue before the processor starts: one receive, one group
        stack.sqs.put("steps.fifo", json.dumps({"n": n}), {metadata.TYPE: text(kind)}, group="g")
    async with stack:
        await stack.drain()
        assert stack.dead_letters == []
    # the failed message again, then the rest: each of them once, in order
    assert calls == [("step", 0), ("step", 1), ("step", 1), (kinds[2], 2), ("step", 3)]


async def test_a_fifo_message_behind_one_on_its_last_receive_runs_and_is_not_redriven_unrun() -> None:
    # the failing message is dead-lettered on its last receive (its group goes on): the one behind it
    # must run then, not be released again until SQS's redrive policy moves it, never run, to the DLQ
    calls: list[int] = []
    app = conveyor.App()

    @app.handler("step")
    async def on_step(step: Step) -> None:
        calls.append(step.n)
        if step.n == 0:
            raise RuntimeError("always transient")

    @app.handler("audit")
    @conveyor.batch_handler
    async def on_audit(steps: list[Step]) -> None: ...

    stack = InMemoryStack(app, queue_name="steps.fifo", retry_seconds=0, max_receive_count=3)
    for n in (0, 1):
        stack.sqs.put("steps.fifo", json.dumps({"n": n}), {metadata.TYPE: text("step")}, group="g")
    async with stack:
        await stack.drain()
        dead = stack.dead_letters
    assert calls == [0, 0, 0, 1]
    assert [(json.loads(d.body), d.error_type) for d in dead] == [({"n": 0}, "builtins.RuntimeError")]
