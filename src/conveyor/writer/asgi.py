"""ASGI entry for uvicorn (``conveyor.writer.asgi:app``, a factory): settings from the environment."""

from __future__ import annotations

import logging
import sys

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor import tracing
from conveyor.errors import ConveyorError
from conveyor.logs import configure_logging
from conveyor.settings import WriterSettings
from conveyor.writer.app import create_app

PROG = "queue-writer"
UVICORN_STARTUP_FAILED = "Application startup failed. Exiting."


class StartupGuard:
    """uvicorn reports a failed start-up as the lifespan's traceback. A queue that cannot be used (or
    a configuration that cannot work, such as a mirror queue of the other kind) is the operator's to
    fix, not a bug: it is one line on stderr (``queue-writer: <code>: <SQS's
    text>``, as the processor says it), and uvicorn exits with its start-up failure status (which
    ``queue-writer`` turns into exit 1). Any other start-up failure keeps its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Message) -> None:
            # Starlette sends startup.failed from inside its `except` block: the error is the one
            # being handled.
            error = sys.exception()
            if message["type"] == "lifespan.startup.failed" and isinstance(error, ConveyorError):
                print(f"{PROG}: {error}", file=sys.stderr)
                logging.getLogger("uvicorn.error").addFilter(_drop(UVICORN_STARTUP_FAILED))
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, guarded)
        except ConveyorError:
            return  # said in one line already


def _drop(text: str) -> logging.Filter:
    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith(text)

    return Drop()


def app() -> ASGIApp:
    settings = WriterSettings()
    configure_logging(settings.log_format, settings.log_level)
    tracing.install(tracing.from_environment("queue-writer"))  # in each worker; shut down with the app
    return StartupGuard(create_app(settings))
