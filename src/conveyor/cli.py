"""Console entry points: `conveyor`, `queue-writer`, `queue-processor`. Nothing else reads argv.

Every failure the user can fix ends with a non-zero exit and one readable line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import NoReturn

from pydantic import ValidationError

from conveyor.localstack import LocalStackError
from conveyor.logs import configure_logging
from conveyor.processor.handler import HandlerLoadError
from conveyor.settings import (
    DevSettings,
    ProcessorSettings,
    SqsSettings,
    WriterSettings,
    describe_errors,
)
from conveyor.sqs.client import ConfigurationError, sqs_client
from conveyor.sqs.errors import SqsError, classify
from conveyor.sqs.queues import create_queues

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def _fail(prog: str, lines: list[str], code: int) -> NoReturn:
    for line in lines:
        print(f"{prog}: {line}", file=sys.stderr)
    raise SystemExit(code)


def _guarded[T](prog: str, body: Callable[[], T]) -> T:
    """Run ``body``, turning known failures into one line and an exit code."""
    try:
        return body()
    except ValidationError as exc:
        _fail(prog, describe_errors(exc), EXIT_CONFIG)
    except ConfigurationError as exc:
        _fail(prog, [str(exc)], EXIT_CONFIG)
    except HandlerLoadError as exc:
        _fail(prog, [str(exc)], EXIT_CONFIG)
    except (LocalStackError, SqsError, OSError) as exc:
        _fail(prog, [str(exc)], EXIT_FAILURE)


async def _queues_create(settings: SqsSettings) -> None:
    async with sqs_client(settings) as client:
        try:
            url, dlq_url = await create_queues(client, settings.queue_name, settings.max_receive_count)
        except Exception as exc:
            raise SqsError(classify(exc)) from exc
    print(f"queue: {url}\ndead-letter queue: {dlq_url}")


def conveyor_main(argv: list[str] | None = None) -> None:
    """`conveyor dev` and `conveyor queues create`."""
    parser = argparse.ArgumentParser(prog="conveyor", description="Conveyor: HTTP to SQS, processed.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="run LocalStack, the queues, the writer and the processor")
    queues = commands.add_parser("queues", help="manage the queue and its dead-letter queue")
    queues.add_subparsers(dest="action", required=True).add_parser(
        "create", help="create the queue and its DLQ with a redrive policy (idempotent)"
    )
    args = parser.parse_args(argv)
    if args.command == "dev":
        from conveyor.dev import run_dev  # noqa: PLC0415 - only `dev` needs subprocess handling

        raise SystemExit(_guarded("conveyor", lambda: run_dev(DevSettings())))
    settings = _guarded("conveyor", SqsSettings)
    configure_logging(settings.log_format, settings.log_level)
    _guarded("conveyor", lambda: asyncio.run(_queues_create(settings)))


def writer_main() -> None:
    """`queue-writer`: serve the HTTP API."""
    from conveyor.writer.server import serve  # noqa: PLC0415 - keep `conveyor --help` light

    settings = _guarded("queue-writer", WriterSettings)
    configure_logging(settings.log_format, settings.log_level)
    raise SystemExit(_guarded("queue-writer", lambda: serve(settings)))


def processor_main() -> None:
    """`queue-processor`: consume the queue with the configured handler."""
    from conveyor.processor.runner import main  # noqa: PLC0415 - keep `conveyor --help` light

    settings = _guarded("queue-processor", ProcessorSettings)
    configure_logging(settings.log_format, settings.log_level)
    raise SystemExit(_guarded("queue-processor", lambda: main(settings)))
