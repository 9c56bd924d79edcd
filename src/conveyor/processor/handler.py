"""Load the user's handler (``package.module:function``) and call it the same way, sync or async."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from conveyor.message import BATCH_MARK, BatchFailures, Message

type Handler = Callable[[Message], Awaitable[None]]


class HandlerLoadError(Exception):
    """CONVEYOR_HANDLER does not name a usable callable; the message is one readable line."""


def import_handler(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerLoadError(f"CONVEYOR_HANDLER must look like package.module:function, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerLoadError(f"cannot import handler module {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise HandlerLoadError(f"{spec!r} is not a callable in {module_name!r}")
    return target  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class BatchHandler:
    """A handler marked with :func:`conveyor.batch_handler`, made async."""

    call: Callable[[list[Message]], Awaitable[BatchFailures]]


def adapt(func: Callable[..., Any], executor: ThreadPoolExecutor) -> Handler | BatchHandler:
    """An async handler is awaited; a plain function runs in ``executor`` (sized to the concurrency),
    with the caller's context variables (so log context follows the message into the thread)."""
    runner = _as_async(func, executor)
    return BatchHandler(runner) if getattr(func, BATCH_MARK, False) else runner


def _as_async(func: Callable[..., Any], executor: ThreadPoolExecutor) -> Callable[[Any], Awaitable[Any]]:
    if inspect.iscoroutinefunction(func):
        return func

    async def in_thread(argument: Any) -> Any:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(executor, functools.partial(context.run, func, argument))
        if inspect.isawaitable(result):
            return await result
        return result

    return in_thread
