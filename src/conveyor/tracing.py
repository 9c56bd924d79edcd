"""OpenTelemetry tracing: optional (``pip install 'conveyor[otel]'``) and configured the standard way.

On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``), ``OTEL_SDK_DISABLED`` is not
``true``, and the SDK is installed; the rest comes from the usual variables (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_ENDPOINT``, ...). Off otherwise: :data:`NO_TRACING`,
whose methods do nothing, and OpenTelemetry is not even imported.

Spans follow the messaging semantic conventions (``messaging.system = aws_sqs``): the writer makes a
server span per request, a ``send`` span per message (a child of its request; its context travels as
the message's ``traceparent`` attribute) and one span per SendMessageBatch call, linked to the
messages it carries; the processor makes a ``process`` span per message that continues the writer's
trace through that attribute (a batch handler's span links to each message's context instead).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

SYSTEM = "aws_sqs"
EXPORTERS = frozenset({"otlp", "console"})


class Recorder(Protocol):
    """What the code under a span may say about it."""

    def outcome(self, message_id: str, outcome: str) -> None: ...

    def status(self, code: int) -> None: ...


class _Nothing:
    def outcome(self, message_id: str, outcome: str) -> None:
        return None

    def status(self, code: int) -> None:
        return None


NOTHING = _Nothing()


@dataclass(frozen=True, slots=True)
class Carried:
    """A message as tracing sees it: its id and the trace context it carries."""

    message_id: str
    traceparent: str | None


class NoTracing:
    """Tracing off: every span is nothing, and costs next to nothing."""

    enabled = False

    def process(self, destination: str, messages: Sequence[Carried]) -> AbstractContextManager[Recorder]:
        return nullcontext(NOTHING)

    def request(
        self, method: str, route: str | None, traceparent: str | None = None
    ) -> AbstractContextManager[Recorder]:
        return nullcontext(NOTHING)

    def send(self, destination: str) -> AbstractContextManager[str | None]:
        return nullcontext(None)

    def send_batch(self, destination: str, traceparents: Sequence[str | None]) -> AbstractContextManager[None]:
        return nullcontext(None)

    def log_fields(self) -> Mapping[str, str]:
        return {}

    def shutdown(self) -> None:
        return None


NO_TRACING = NoTracing()
ACTIVE: NoTracing | Tracing = NO_TRACING  # the process's tracing, as installed by its entry point


def install(tracing: NoTracing | Tracing) -> None:
    """Make ``tracing`` the process's (log lines then carry its trace and span ids)."""
    global ACTIVE  # noqa: PLW0603 - one per process, set once by the entry point
    ACTIVE = tracing


def add_trace_ids(_: object, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current span's ``trace_id``/``span_id`` on every log line."""
    if ACTIVE.enabled:
        event.update(ACTIVE.log_fields())
    return event


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """The standard variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",")}
    return bool(exporters & EXPORTERS)


def from_environment(default_service: str) -> NoTracing | Tracing:
    """Tracing as the environment configures it (``NO_TRACING`` when it is off or not installed)."""
    if not wanted():
        return NO_TRACING
    try:
        provider = _provider(default_service)
    except ImportError:
        return NO_TRACING  # asked for, but `conveyor[otel]` is not installed: the services say so at start
    return Tracing(provider)


def _provider(default_service: str) -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415 - only when tracing is on
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter  # noqa: PLC0415

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: default_service}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in {e.strip().lower() for e in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")} & EXPORTERS:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class _SpanRecorder:
    def __init__(self, span: Span) -> None:
        self._span = span

    def outcome(self, message_id: str, outcome: str) -> None:
        self._span.add_event("settled", {"messaging.message.id": message_id, "conveyor.outcome": outcome})
        self._span.set_attribute("conveyor.outcome", outcome)

    def status(self, code: int) -> None:
        from opentelemetry.trace import StatusCode  # noqa: PLC0415 - only when tracing is on

        self._span.set_attribute("http.response.status_code", code)
        if code >= 500:
            self._span.set_status(StatusCode.ERROR)


class Tracing:
    """Tracing on, with ``provider`` (tests give one with an in-memory exporter)."""

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: PLC0415

        self._provider = provider
        self._tracer: Tracer = provider.get_tracer("conveyor")
        self._propagator = TraceContextTextMapPropagator()

    @contextmanager
    def process(self, destination: str, messages: Sequence[Carried]) -> Iterator[Recorder]:
        """One consumer span for the handler's call: a child of the writer's ``send`` span for one
        message; for a batch, a span of its own with a link to each message's context."""
        from opentelemetry.trace import Link, SpanKind, get_current_span  # noqa: PLC0415

        contexts = [self._extract(m.traceparent) for m in messages]
        attributes: dict[str, Any] = _messaging(destination, "process")
        if len(messages) == 1:
            attributes["messaging.message.id"] = messages[0].message_id
            parent, links = contexts[0], []
        else:
            attributes["messaging.batch.message_count"] = len(messages)
            parent = None
            links = [Link(get_current_span(c).get_span_context()) for c in contexts if c is not None]
        with self._tracer.start_as_current_span(
            f"process {destination}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        ) as span:
            yield _SpanRecorder(span)

    @contextmanager
    def request(self, method: str, route: str | None, traceparent: str | None = None) -> Iterator[Recorder]:
        """A server span for one HTTP request: a child of the caller's ``traceparent`` (valid W3C
        trace context), else a new trace. ``route`` is None for a path the app does not serve."""
        from opentelemetry.trace import SpanKind  # noqa: PLC0415

        attributes = {"http.request.method": method} | ({"http.route": route} if route else {})
        with self._tracer.start_as_current_span(
            f"{method} {route}" if route else method,
            context=self._extract(traceparent),
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            yield _SpanRecorder(span)

    @contextmanager
    def send(self, destination: str) -> Iterator[str | None]:
        """A producer span for one message (a child of the current request); yields the
        ``traceparent`` the message carries, so the processor's span continues this trace."""
        from opentelemetry.trace import SpanKind  # noqa: PLC0415

        with self._tracer.start_as_current_span(
            f"send {destination}", kind=SpanKind.PRODUCER, attributes=_messaging(destination, "send")
        ):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            yield carrier.get("traceparent")

    @contextmanager
    def send_batch(self, destination: str, traceparents: Sequence[str | None]) -> Iterator[None]:
        """The SendMessageBatch call, linked to the ``send`` span of each message it carries (a root
        span: it serves several requests, whichever one's context the call's task started in)."""
        from opentelemetry.context import Context  # noqa: PLC0415
        from opentelemetry.trace import Link, SpanKind, get_current_span  # noqa: PLC0415

        contexts = [self._extract(t) for t in traceparents]
        links = [Link(get_current_span(c).get_span_context()) for c in contexts if c is not None]
        attributes = _messaging(destination, "send") | {"messaging.batch.message_count": len(traceparents)}
        with self._tracer.start_as_current_span(
            f"send {destination} batch", context=Context(), kind=SpanKind.CLIENT, attributes=attributes, links=links
        ):
            yield

    def log_fields(self) -> Mapping[str, str]:
        """The current span's ids, for log lines."""
        from opentelemetry.trace import get_current_span  # noqa: PLC0415

        context = get_current_span().get_span_context()
        if not context.is_valid:
            return {}
        return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}

    def shutdown(self) -> None:
        self._provider.shutdown()  # exports what is buffered

    def _extract(self, traceparent: str | None) -> Any:
        return self._propagator.extract({"traceparent": traceparent}) if traceparent else None


def _messaging(destination: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": destination,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
    }
