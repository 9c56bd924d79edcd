"""OpenTelemetry: off unless the OTEL_* variables ask, and then spans that follow the
messaging conventions and continue the writer's trace through the ``traceparent`` attribute."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conveyor import BatchFailures, Message, batch_handler, metadata, tracing
from conveyor.processor.engine import Engine
from conveyor.processor.user_code import adapt
from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.unit.conftest import running_writer
from tests.unit.engine_support import QUEUE, config_for, until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def exported() -> Iterator[tuple[tracing.Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracing.Tracing(provider), exporter
    provider.shutdown()


def carried(trace_id: str = TRACE_ID, parent: str = PARENT_ID) -> dict[str, dict[str, str]]:
    return {metadata.TRACEPARENT: {"DataType": "String", "StringValue": f"00-{trace_id}-{parent}-01"}}


@pytest.mark.parametrize(
    ("environment", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, True),
    ],
)
def test_the_standard_variables_turn_it_on(environment: dict[str, str], on: bool) -> None:
    assert tracing.wanted(environment) is on


def test_off_means_no_span_and_no_sdk_imported() -> None:
    code = """
import sys
import conveyor.processor.runner, conveyor.writer.app, conveyor.logs
from conveyor import tracing
chosen = tracing.from_environment("queue-processor")
print(chosen.enabled, sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
"""
    env = {"PATH": "/usr/bin:/bin"}  # no OTEL_* at all
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False []"


async def test_a_processed_message_continues_the_writers_trace(
    exported: tuple[tracing.Tracing, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    fake = InMemorySqs()
    fake.create(QUEUE)
    fake.put(QUEUE, "x", carried())
    logged: list[dict[str, object]] = []
    tracing.install(tracer)

    async def handler(message: Message) -> None:
        logged.append(dict(tracing.add_trace_ids(None, "info", {})))

    engine = Engine(as_client(fake), config_for(fake), handler, tracing=tracer)
    task = asyncio.create_task(engine.run())
    try:
        await until(lambda: len(fake.queues[QUEUE].deleted) == 1)
    finally:
        tracing.install(tracing.NO_TRACING)
        engine.stop()
        await asyncio.wait_for(task, 5)
    [span] = exporter.get_finished_spans()
    assert span.name == f"process {QUEUE}"
    assert span.kind is SpanKind.CONSUMER
    assert f"{span.context.trace_id:032x}" == TRACE_ID  # the writer's trace, continued
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT_ID
    attributes = dict(span.attributes or {})
    assert attributes["messaging.system"] == "aws_sqs"
    assert attributes["messaging.destination.name"] == QUEUE
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == fake.queues[QUEUE].deleted[0].message_id
    assert attributes["conveyor.outcome"] == "ack"
    # the handler's log lines carry the span's ids
    assert logged == [{"trace_id": TRACE_ID, "span_id": f"{span.context.span_id:016x}"}]


async def test_a_batch_handlers_span_links_each_messages_context(
    exported: tuple[tracing.Tracing, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    fake = InMemorySqs()
    fake.create(QUEUE)
    traces = [f"{n:032x}" for n in range(1, 4)]
    for trace_id in traces:
        fake.put(QUEUE, json.dumps(trace_id), carried(trace_id))

    @batch_handler
    async def handle(messages: list[Message]) -> BatchFailures:
        return None

    with ThreadPoolExecutor(1) as pool:
        engine = Engine(as_client(fake), config_for(fake, concurrency=1), adapt(handle, pool), tracing=tracer)
        task = asyncio.create_task(engine.run())
        await until(lambda: len(fake.queues[QUEUE].deleted) == 3)
        engine.stop()
        await asyncio.wait_for(task, 5)
    spans: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
    linked = {f"{link.context.trace_id:032x}" for span in spans for link in span.links}
    assert linked == set(traces)
    assert all(span.parent is None for span in spans)  # a batch's span is a root of its own


def by_kind(spans: tuple[ReadableSpan, ...]) -> dict[SpanKind, ReadableSpan]:
    kinds = {span.kind: span for span in spans}
    assert len(kinds) == len(spans), [(s.name, s.kind) for s in spans]
    return kinds


def ids(span: ReadableSpan) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


async def through_writer_and_processor(
    tracer: tracing.NoTracing | tracing.Tracing, headers: dict[str, str]
) -> tuple[InMemorySqs, dict[str, object]]:
    """POST one message through the writer app, then let the processor engine handle it (same fake
    queue, same tracer); the message's attributes as SQS held them."""
    fake = InMemorySqs()
    fake.create(QUEUE)
    handled: list[Message] = []

    async def handler(message: Message) -> None:
        handled.append(message)

    async with running_writer(fake, WriterSettings(queue_name=QUEUE), tracer) as api:
        response = await api.post("/messages", json={"body": {"order": 1}}, headers=headers)
        assert response.status_code == 202, response.text
        [stored] = fake.queues[QUEUE].messages.values()
        # (a visibility no starved CPU outlasts: the message is handled once, whatever the machine)
        engine = Engine(as_client(fake), config_for(fake, visibility_timeout=30), handler, tracing=tracer)
        task = asyncio.create_task(engine.run())
        try:
            await until(lambda: len(fake.queues[QUEUE].deleted) == 1)
        finally:
            engine.stop()
            await asyncio.wait_for(task, 5)
    assert len(handled) == 1
    return fake, dict(stored.attributes)


async def test_one_post_is_one_trace_from_the_writers_request_to_the_handler(
    exported: tuple[tracing.Tracing, InMemorySpanExporter],
) -> None:
    # GIVEN tracing on, WHEN a client that traces posts one message that the processor then handles
    tracer, exporter = exported
    client_context = f"00-{TRACE_ID}-{PARENT_ID}-01"
    _, attributes = await through_writer_and_processor(tracer, {"traceparent": client_context})
    spans = by_kind(exporter.get_finished_spans())
    request, send = spans[SpanKind.SERVER], spans[SpanKind.PRODUCER]
    batch, process = spans[SpanKind.CLIENT], spans[SpanKind.CONSUMER]
    # THEN the writer's request span continues the client's trace ...
    assert request.name == "POST /messages"
    assert ids(request)[0] == TRACE_ID
    assert request.parent is not None
    assert f"{request.parent.span_id:016x}" == PARENT_ID
    assert dict(request.attributes or {})["http.response.status_code"] == 202
    # ... the send span is its child, and its context (not the client's) travels with the message ...
    assert send.name == f"send {QUEUE}"
    assert send.parent is not None
    assert send.parent.span_id == request.context.span_id
    assert attributes[metadata.TRACEPARENT] == {"DataType": "String", "StringValue": f"00-{TRACE_ID}-{ids(send)[1]}-01"}
    # ... the SendMessageBatch call links to it ...
    assert batch.name == f"send {QUEUE} batch"
    assert _linked(batch) == {ids(send)}
    assert dict(batch.attributes or {})["messaging.batch.message_count"] == 1
    # ... and the processor's span is the send span's child: one trace from the client to the handler
    assert ids(process)[0] == TRACE_ID
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id


async def test_without_a_callers_context_the_writers_request_starts_the_trace(
    exported: tuple[tracing.Tracing, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    _, attributes = await through_writer_and_processor(tracer, {"traceparent": "not a trace context"})
    spans = by_kind(exporter.get_finished_spans())
    request, send, process = spans[SpanKind.SERVER], spans[SpanKind.PRODUCER], spans[SpanKind.CONSUMER]
    assert request.parent is None
    trace_id = ids(request)[0]
    assert ids(send)[0] == ids(process)[0] == trace_id
    carried = attributes[metadata.TRACEPARENT]["StringValue"]  # type: ignore[index]
    assert carried.startswith(f"00-{trace_id}-{ids(send)[1]}-")  # flags: sampled (and a random trace id)


async def test_with_tracing_off_the_writer_carries_the_callers_context_and_makes_no_span(
    exported: tuple[tracing.Tracing, InMemorySpanExporter],
) -> None:
    _, exporter = exported
    client_context = f"00-{TRACE_ID}-{PARENT_ID}-01"
    _, attributes = await through_writer_and_processor(tracing.NO_TRACING, {"traceparent": client_context})
    assert attributes[metadata.TRACEPARENT] == {"DataType": "String", "StringValue": client_context}
    assert exporter.get_finished_spans() == ()


async def test_a_batch_requests_entries_each_have_a_send_span(
    exported: tuple[tracing.Tracing, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    fake = InMemorySqs()
    fake.create(QUEUE)
    async with running_writer(fake, WriterSettings(queue_name=QUEUE), tracer) as api:
        entries = [{"id": f"e{n}", "body": n} for n in range(3)]
        response = await api.post("/messages/batch", json={"messages": entries})
        assert response.status_code == 200, response.text
    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.kind is SpanKind.SERVER]
    sends = [s for s in spans if s.kind is SpanKind.PRODUCER]
    assert request.name == "POST /messages/batch"
    assert len(sends) == 3
    assert all(s.parent is not None and s.parent.span_id == request.context.span_id for s in sends)
    carried = {m.attributes[metadata.TRACEPARENT]["StringValue"][:-3] for m in fake.queues[QUEUE].messages.values()}
    assert carried == {f"00-{ids(s)[0]}-{ids(s)[1]}" for s in sends}
    linked = {link for s in spans if s.kind is SpanKind.CLIENT for link in _linked(s)}
    assert linked == {ids(s) for s in sends}


def _linked(span: ReadableSpan) -> set[tuple[str, str]]:
    return {(f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in span.links}


async def test_the_writer_exports_its_buffered_spans_when_it_stops() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))  # exports at shutdown
    fake = InMemorySqs()
    fake.create(QUEUE)
    async with running_writer(fake, WriterSettings(queue_name=QUEUE), tracing.Tracing(provider)) as api:
        assert (await api.get("/healthz")).status_code == 200
        assert exporter.get_finished_spans() == ()  # still buffered
    assert [span.name for span in exporter.get_finished_spans()] == ["GET /healthz"]
