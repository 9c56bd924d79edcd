"""`conveyor console`: serve the web console (uvicorn) on CONVEYOR_CONSOLE_HOST:CONVEYOR_CONSOLE_PORT
(127.0.0.1:8002 by default) over the configured queue, its dead-letter queue and its canary queue.

Without CONVEYOR_CONSOLE_TOKEN the console is read-only. See docs/console.md.
"""

from __future__ import annotations

import argparse
from typing import Any

import structlog
import uvicorn

from conveyor.logs import configure_logging
from conveyor.serving import GracefulServer

PROG = "conveyor console"


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "console", help="a web console: the queues, the processors, the canary, the dead letters", description=__doc__
    )
    parser.set_defaults(run=run, prog=PROG)


def run(args: argparse.Namespace) -> int:
    from conveyor.console.app import create_console_app  # noqa: PLC0415 - keep `conveyor --help` light
    from conveyor.console.settings import ConsoleSettings  # noqa: PLC0415

    settings = ConsoleSettings()  # a bad value: one line per setting, exit 2 (the CLI's guard)
    configure_logging(settings.log_format, settings.log_level)
    log = structlog.get_logger("conveyor.console")
    log.info("console_starting", host=settings.console_host, port=settings.console_port,
             read_only=settings.console_token is None, metrics_urls=len(settings.metrics_urls))  # fmt: skip
    config = uvicorn.Config(
        create_console_app(settings), host=settings.console_host, port=settings.console_port,
        log_config=None, access_log=False, lifespan="on",
    )  # fmt: skip
    server = GracefulServer(config)
    server.run()
    return 0 if server.started else 1
