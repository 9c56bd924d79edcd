"""Load the user's handler (``package.module:function``) and call it the same way, sync or async."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from conveyor.contracts import App
from conveyor.errors import ConfigurationError
from conveyor.loading import import_app, import_object
from conveyor.message import BATCH_MARK, BatchFailures, Message

type Handler = Callable[[Message], Awaitable[None]]
log = structlog.get_logger("conveyor.processor")


class HandlerLoadError(ConfigurationError):
    """CONVEYOR_HANDLER does not name a usable callable; the message is one readable line."""


class StillRunningError(asyncio.CancelledError):
    """A plain function's call was cancelled but its thread had started and goes on (a thread cannot
    be stopped): its message must not be given back to the queue while it runs."""


class _ThreadCount:
    """Handler calls running in threads now, so the process knows not to wait for them at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    def __call__(self, func: Callable[[Any], Any], argument: Any) -> Any:
        with self._lock:
            self._running += 1
        try:
            return func(argument)
        finally:
            with self._lock:
                self._running -= 1

    @property
    def running(self) -> int:
        return self._running


THREADS = _ThreadCount()


def import_handler(spec: str) -> Callable[..., Any]:
    """The handler ``CONVEYOR_HANDLER`` names (imported from the current folder too)."""
    try:
        target = import_object(spec, "CONVEYOR_HANDLER", "handler", "function")
    except ConfigurationError as exc:
        raise HandlerLoadError(str(exc)) from exc.__cause__
    if not callable(target):
        raise HandlerLoadError(f"CONVEYOR_HANDLER={spec!r} is not a callable")
    return target  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class BatchHandler:
    """A handler marked with :func:`conveyor.batch_handler`, made async."""

    call: Callable[[list[Message]], Awaitable[BatchFailures]]


def adapt(func: Callable[..., Any], executor: ThreadPoolExecutor) -> Handler | BatchHandler:
    """An async handler is awaited; a plain function runs in ``executor`` (sized to the concurrency),
    with the caller's context variables (so log context follows the message into the thread)."""
    runner = as_async(func, executor)
    return BatchHandler(runner) if getattr(func, BATCH_MARK, False) else runner


def as_async(func: Callable[..., Any], executor: ThreadPoolExecutor) -> Callable[[Any], Awaitable[Any]]:
    if inspect.iscoroutinefunction(func):
        return func

    async def in_thread(argument: Any) -> Any:
        context = contextvars.copy_context()
        call = executor.submit(context.run, functools.partial(THREADS, func), argument)
        try:
            result = await asyncio.wrap_future(call)
        except asyncio.CancelledError as exc:
            if call.done() and not call.cancelled():
                result = call.result()  # it finished meanwhile: its outcome stands
            elif call.cancelled() or call.cancel():
                raise  # never started: nothing runs
            else:
                raise StillRunningError from exc
        if inspect.isawaitable(result):
            return await result
        return result

    return in_thread


def load_user_code(app: str | None, handler: str) -> Callable[..., Any] | App:
    """What the processor runs: ``CONVEYOR_APP``'s app, else ``CONVEYOR_HANDLER``'s function (the
    settings refuse both set)."""
    return import_app(app) if app else import_handler(handler)


def log_loaded(code: Callable[..., Any] | App, app: str | None, handler: str) -> None:
    """Which code this processor runs, once it is about to run it (a start that fails says only why)."""
    if isinstance(code, App):
        log.info("app_loaded", service="queue-processor", app=app, handlers=code.describe())
    else:
        log.info(
            "handler_loaded", service="queue-processor", handler=handler, batch=bool(getattr(code, BATCH_MARK, False))
        )
