"""Run a handler or an app on one message the way the processor does, without SQS: what would
happen to the message (deleted, retried after how long, dead-lettered) and why."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from conveyor.contracts import App
from conveyor.message import Message
from conveyor.processor.engine.invoke import HANDLER_ERRORS, failures_of
from conveyor.processor.engine.outcome import Ack, DeadLetter, RetryAfter, RetryPolicy, decide
from conveyor.processor.routing import log_context, router
from conveyor.processor.user_code import BatchHandler, adapt

# A handler that raises CancelledError itself fails (as in the engine): nothing cancels a run() here.
RUN_ERRORS: tuple[type[BaseException], ...] = (*HANDLER_ERRORS, asyncio.CancelledError)
DEFAULT_POLICY = RetryPolicy(base_seconds=1.0, max_seconds=300.0, max_receive_count=5, dead_letter_queue=True)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the processor would do with the message."""

    action: Literal["delete", "retry", "dead_letter"]
    # a retry: seconds until the message is delivered again (Retry(after=...) as asked; after any other
    # error the backoff of its receive count, half of it random)
    delay_seconds: int | None = None
    error: BaseException | None = None  # a retry or a dead letter: what the handler (or the router) raised

    @property
    def error_type(self) -> str | None:
        """As the dead-letter record names it (``conveyor.InvalidMessageError``, ``builtins.ValueError``)."""
        return None if self.error is None else f"{type(self.error).__module__}.{type(self.error).__qualname__}"


async def run(target: App | Callable[..., Any], message: Message, *, max_receive_count: int | None = 5) -> Outcome:
    """Run ``target`` (an app, or one handler function, sync or async, batch or not) on ``message``;
    ``max_receive_count`` is the queue's redrive policy (a retryable error on the last receive it
    allows is dead-lettered)."""
    policy = dataclasses.replace(DEFAULT_POLICY, max_receive_count=max_receive_count)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="handler") as executor:
        func = router(target, executor, policy) if isinstance(target, App) else target
        with log_context(message):
            error = await _error_of(adapt(func, executor), message)
    decided = decide(error, message.receive_count, policy)
    if isinstance(decided, Ack):
        return Outcome("delete")
    if isinstance(decided, DeadLetter):
        return Outcome("dead_letter", error=decided.error)
    if isinstance(decided, RetryAfter):
        return Outcome("retry", delay_seconds=decided.seconds, error=decided.error)
    raise AssertionError(f"unexpected decision {decided!r}")


async def _error_of(handler: Any, message: Message) -> BaseException | None:
    try:
        if isinstance(handler, BatchHandler):
            failures = await handler.call([message])
            return failures_of(failures, [message.message_id]).get(message.message_id)  # the engine's check
        await handler(message)
    except RUN_ERRORS as exc:
        return exc
    return None
