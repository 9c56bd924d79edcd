"""OpenTelemetry (issue 13): off unless the OTEL_* variables ask, and then spans that follow the
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
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conveyor import BatchFailures, Message, batch_handler, metadata, tracing
from conveyor.processor.engine import Engine
from conveyor.processor.user_code import adapt
from tests.fakes import FakeSqs, as_client
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
    fake = FakeSqs()
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
    fake = FakeSqs()
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
