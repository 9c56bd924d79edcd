"""structlog set-up: JSON lines by default, readable console output when attached to a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

from conveyor.tracing import add_trace_ids

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS["error"] = logging.ERROR


# Libraries whose info lines are chatter (botocore's "Found credentials ...", httpx's per request):
# their warnings still come out.
QUIET_LIBRARIES = ("botocore", "aiobotocore", "urllib3", "asyncio", "httpx", "httpcore", "watchfiles", "filelock")


def configure_logging(fmt: Literal["auto", "json", "console"] = "auto", level: str = "info") -> None:
    """Configure structlog, and route stdlib ``logging`` (the handler's own lines, libraries')
    through the same processors and renderer: one stream, one format, the message's ids bound."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        # Plain tracebacks: rich's would print each frame's local variables, a message's body with them.
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    numeric = LEVELS.get(level, logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # The process's own stderr, not whatever sys.stderr is when this runs (a test's capture).
        logger_factory=structlog.PrintLoggerFactory(sys.__stderr__ or sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(shared, renderer, numeric)


def _route_stdlib_logging(
    shared: list[structlog.typing.Processor], renderer: structlog.typing.Processor, level: int
) -> None:
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # ExtraAdder: `logging`'s extra={...} become fields, as keyword arguments do for structlog
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> Any:
    """The logger for your handler's code: its lines go out with the processor's own (JSON or
    console), carrying the message's ``message_id``, ``request_id`` and ``message_type``, and
    ``logger`` set to ``name``. ``log.info("order_paid", order_id=...)``; stdlib ``logging`` works
    too and comes out the same way."""
    return structlog.get_logger().bind(logger=name)
