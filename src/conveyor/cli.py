"""Console entry points: `conveyor`, `queue-writer`, `queue-processor`. Nothing else reads argv
(the operator commands declare their flags in their own modules: canary/command.py, dlq/command.py,
status.py).

Every failure the user can fix ends with a non-zero exit and one readable line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, NoReturn

from pydantic import BaseModel, SecretStr, ValidationError

from conveyor import asyncapi_command
from conveyor.canary import command as canary_command
from conveyor.console import command as console_command
from conveyor.dlq import command as dlq_command
from conveyor.errors import ConveyorError
from conveyor.loading import import_app
from conveyor.logs import configure_logging
from conveyor.payloads.bucket import ensure_bucket
from conveyor.payloads.client import s3_client
from conveyor.payloads.settings import PayloadSettings
from conveyor.settings import (
    DevSettings,
    ProcessorSettings,
    SqsSettings,
    WriterSettings,
    describe_errors,
)
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import classified
from conveyor.sqs.queues import canary_queue_url, create_queues, fifo_name
from conveyor.status import register as register_status

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
    except ConveyorError as exc:
        _fail(prog, [str(exc)], exc.exit_code)
    except OSError as exc:
        _fail(prog, [str(exc)], EXIT_FAILURE)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2, like every other error here."""

    def error(self, message: str) -> NoReturn:
        _fail(self.prog, [f"{message} (see --help)"], EXIT_CONFIG)


def _version() -> str:
    return f"%(prog)s {version('conveyor')}"


def _environment(settings: type[BaseModel]) -> str:
    """The service's settings as environment variables with their defaults, for --help."""
    lines = ["environment (all settings and their meaning: docs/configuration.md):"]
    for name, field in settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None or isinstance(default, SecretStr) else str(default)
        lines.append(f"  CONVEYOR_{name.upper():<40} {shown}")
    return "\n".join(lines)


def _service_parser(prog: str, description: str, settings: type[BaseModel]) -> OneLineParser:
    parser = OneLineParser(
        prog=prog, description=description, epilog=_environment(settings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=_version())
    return parser


class QueuesSettings(SqsSettings, PayloadSettings):
    """`conveyor queues create`: the queues, and the payload bucket when CONVEYOR_PAYLOAD_BUCKET names one."""


async def _queues_create(settings: QueuesSettings, content_based_dedup: bool) -> None:
    async with sqs_client(settings) as client:
        with classified():
            url, dlq_url = await create_queues(
                client, settings.queue_name, settings.max_receive_count, content_based_dedup=content_based_dedup
            )
            canary_url = await canary_queue_url(client, settings)
    print(f"queue: {url}\ndead-letter queue: {dlq_url}\ncanary queue: {canary_url}")
    if settings.payload_bucket is not None:
        async with s3_client(settings) as s3:
            await ensure_bucket(s3, settings.payload_bucket)
        print(f"payload bucket: {settings.payload_bucket}")


def conveyor_main(argv: list[str] | None = None) -> None:
    """`conveyor dev`, `queues create`, `canary`, `dlq ...`, `status`, `asyncapi`."""
    parser = _conveyor_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "run"):  # the operator commands
        run: Callable[[Any], int] = args.run
        prog = getattr(args, "prog", f"conveyor {args.command}")
        raise SystemExit(_guarded(prog, lambda: run(args)))
    if args.command == "dev":
        from conveyor.dev import run_dev  # noqa: PLC0415 - only `dev` needs subprocess handling

        _dev_options_into_environment(args)
        dev_settings = _guarded("conveyor", lambda: _fifo_if(args.fifo, DevSettings()))
        raise SystemExit(_guarded("conveyor", lambda: run_dev(dev_settings, reload=args.reload)))
    if args.content_based_deduplication and not args.fifo:
        parser.error("--content-based-deduplication goes with --fifo")
    settings = _guarded("conveyor", lambda: _fifo_if(args.fifo, QueuesSettings()))
    configure_logging(settings.log_format, settings.log_level)
    _guarded("conveyor", lambda: asyncio.run(_queues_create(settings, args.content_based_deduplication)))


def _conveyor_parser() -> OneLineParser:
    parser = OneLineParser(prog="conveyor", description="Conveyor: HTTP to SQS, processed.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)
    _add_dev(commands)
    queues = commands.add_parser("queues", help="manage the queue and its dead-letter queue")
    create = queues.add_subparsers(dest="action", required=True).add_parser(
        "create", help="create the queue, its DLQ with a redrive policy, and its canary queue (idempotent)"
    )
    create.add_argument("--fifo", action="store_true", help="a FIFO pair: <name>.fifo and <name>-dlq.fifo")
    create.add_argument(
        "--content-based-deduplication", action="store_true",
        help="with --fifo: SQS derives the deduplication id from the body when a message has none",
    )  # fmt: skip
    canary_command.register(commands)
    console_command.register(commands)
    dlq_command.register(commands)
    register_status(commands)
    asyncapi_command.register(commands)
    return parser


def _add_dev(commands: Any) -> None:
    dev = commands.add_parser(
        "dev", help="run LocalStack, the queues, the writer and the processor",
        description="Run the embedded LocalStack (installed on the first run), the queues, the writer and the"
        " processor with your app or handler, in the foreground; Ctrl-C stops everything. Each option is also"
        " an environment variable (named after it); an option wins.",
    )  # fmt: skip
    dev.add_argument("--fifo", action="store_true", help="on a FIFO pair (<name>.fifo, content-based deduplication)")
    for flag, variable, what in DEV_OPTIONS:
        dev.add_argument(flag, metavar=variable.removeprefix("CONVEYOR_"), help=f"{what} ({variable})")
    dev.add_argument(
        "--reload", action="store_true",
        help="restart the processor when a .py file under the current folder changes",
    )  # fmt: skip


DEV_OPTIONS = (
    ("--app", "CONVEYOR_APP", "your app of typed handlers, package.module:app, imported from the current folder"),
    ("--handler", "CONVEYOR_HANDLER", "one handler, package.module:function, imported from the current folder"),
    ("--writer-port", "CONVEYOR_WRITER_PORT", "the writer's port (default 8000)"),
    ("--processor-port", "CONVEYOR_PROCESSOR_PORT", "the processor's ops port (default 8001)"),
    ("--localstack-port", "CONVEYOR_LOCALSTACK_PORT", "the embedded LocalStack's port (default 4566)"),
    ("--queue-name", "CONVEYOR_QUEUE_NAME", "the queue (default conveyor-messages)"),
)


def _dev_options_into_environment(args: argparse.Namespace) -> None:
    """`conveyor dev`'s options become the environment its settings and its children read."""
    for flag, variable, _ in DEV_OPTIONS:
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None:
            os.environ[variable] = value


def _fifo_if[S: SqsSettings](fifo: bool, settings: S) -> S:
    """``--fifo``: the queue is ``<name>.fifo``."""
    return settings.model_copy(update={"queue_name": fifo_name(settings.queue_name)}) if fifo else settings


def writer_command(argv: list[str] | None = None) -> None:
    """The `queue-writer` console script: --help and --version, else :func:`writer_main`."""
    _service_parser(
        "queue-writer", "Serve Conveyor's HTTP API: POST /messages puts messages on the SQS queue.", WriterSettings
    ).parse_args(argv)
    writer_main()


def processor_command(argv: list[str] | None = None) -> None:
    """The `queue-processor` console script: --help and --version, else :func:`processor_main`."""
    _service_parser(
        "queue-processor", "Consume the SQS queue, running CONVEYOR_HANDLER on every message.", ProcessorSettings
    ).parse_args(argv)
    processor_main()


def writer_main() -> None:
    """`queue-writer`: serve the HTTP API."""
    from conveyor.writer.server import serve  # noqa: PLC0415 - keep `conveyor --help` light

    settings = _guarded("queue-writer", WriterSettings)
    configure_logging(settings.log_format, settings.log_level)
    if settings.app:  # a bad app is one line here, before any worker starts
        _guarded("queue-writer", lambda: import_app(str(settings.app)))
    raise SystemExit(_guarded("queue-writer", lambda: serve(settings)))


def processor_main() -> None:
    """`queue-processor`: consume the queue with the configured handler."""
    from conveyor.processor.runner import main  # noqa: PLC0415 - keep `conveyor --help` light

    settings = _guarded("queue-processor", ProcessorSettings)
    configure_logging(settings.log_format, settings.log_level)
    raise SystemExit(_guarded("queue-processor", lambda: main(settings)))
