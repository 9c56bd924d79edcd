"""ASGI entry for uvicorn (``conveyor.writer.asgi:app``, a factory): settings from the environment."""

from __future__ import annotations

from fastapi import FastAPI

from conveyor.logs import configure_logging
from conveyor.settings import WriterSettings
from conveyor.writer.app import create_app


def app() -> FastAPI:
    settings = WriterSettings()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings)
