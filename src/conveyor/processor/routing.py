"""A :class:`conveyor.App` as the processor's one handler: route each message by its
``conveyor.type`` to its type's handler, decode and validate the body into the type's payload first.

A message whose type has no handler, or whose body does not match its model, never reaches a handler:
the router raises :class:`~conveyor.contracts.UnknownMessageTypeError` or
:class:`~conveyor.contracts.InvalidMessageError`, permanent errors the outcome decision dead-letters
at once. What the router returns looks like any handler to the engine (an async function, marked as
a batch handler when any type's handler is one), so the engine's path is the same for both.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

import structlog

from conveyor.contracts import App, MessageType
from conveyor.message import (
    BATCH_MARK,
    IDEMPOTENCY_MARK,
    BatchFailures,
    IdempotencyOptions,
    Message,
    PermanentError,
    idempotency_options,
)
from conveyor.metadata import IDEMPOTENCY_KEY, TYPE
from conveyor.processor.engine.invoke import HANDLER_ERRORS
from conveyor.processor.engine.outcome import NotRun, RetryPolicy, goes_back
from conveyor.processor.user_code import as_async

type Call = Callable[[tuple[Any, ...]], Awaitable[Any]]
KEY_SEPARATOR = "\x1f"  # between a type's name and its own key function's key: in neither of them


def type_of(message: Message) -> str | None:
    return message.attributes.get(TYPE) or None


def router(app: App, executor: ThreadPoolExecutor, policy: RetryPolicy) -> Callable[..., Any]:
    """The app as one handler; plain-function handlers run in ``executor``. ``policy`` is the
    engine's: on a FIFO queue, what sends a message back to the queue holds its group back."""
    calls = {message_type.name: _caller(message_type, executor) for message_type in app.all_types()}
    batch = any(t.batch for t in app.all_types())
    route = _batch_route(app, calls, policy) if batch else _single_route(app, calls)
    setattr(route, IDEMPOTENCY_MARK, idempotency_of(app))
    return route


def _caller(message_type: MessageType, executor: ThreadPoolExecutor) -> Call:
    """The type's handler called with its arguments as one tuple, async whatever the handler is."""
    func = message_type.func
    if inspect.iscoroutinefunction(func):

        async def call_async(arguments: tuple[Any, ...]) -> Any:
            return await func(*arguments)

        return call_async

    def call_plain(arguments: tuple[Any, ...]) -> Any:
        return func(*arguments)

    return as_async(call_plain, executor)


def payload_of(message_type: MessageType, message: Message) -> Any:
    """What the handler's first parameter gets: the validated payload, or the message when untyped."""
    return message_type.decode(message.body) if message_type.typed else message


def arguments(message_type: MessageType, payload: Any, message: Any) -> tuple[Any, ...]:
    return (payload, message) if message_type.signature.passes_message else (payload,)


def log_context(message: Message, message_type: MessageType | None = None) -> AbstractContextManager[None]:
    """The ids every log line about this message carries, the handler's own (stdlib ``logging``
    too): its id, the writer's request id, and its type."""
    return structlog.contextvars.bound_contextvars(
        message_id=message.message_id,
        request_id=message.request_id,
        message_type=message_type.name if message_type else type_of(message),
    )


def _single_route(app: App, calls: Mapping[str | None, Call]) -> Callable[[Message], Awaitable[None]]:
    async def route(message: Message) -> None:
        message_type = app.resolve(type_of(message))
        payload = payload_of(message_type, message)
        # (the message's ids are bound by the engine's invoker for a single handler: the type only)
        with structlog.contextvars.bound_contextvars(message_type=message_type.name):
            await calls[message_type.name](arguments(message_type, payload, message))

    return route


def _batch_route(
    app: App, calls: Mapping[str | None, Call], policy: RetryPolicy
) -> Callable[[list[Message]], Awaitable[BatchFailures]]:
    async def route(messages: list[Message]) -> BatchFailures:
        failures: dict[str, BaseException] = {}
        runs: list[tuple[MessageType, list[tuple[Message, Any]]]] = []
        for message in messages:
            try:
                message_type = app.resolve(type_of(message))
                payload = payload_of(message_type, message)
            except HANDLER_ERRORS as exc:  # this message's failure alone, never its batch's
                failures[message.message_id] = exc
                continue
            if runs and runs[-1][0] is message_type:
                runs[-1][1].append((message, payload))
            else:
                runs.append((message_type, [(message, payload)]))
        if any(message.group_id for message in messages):
            await _run_in_order(runs, calls, failures, policy)
            return failures or None
        for message_type, items in runs:
            call = calls[message_type.name]
            if message_type.batch:
                failures |= await _run_batch(message_type, call, items)
            else:
                failures |= await _run_singles(message_type, call, items)
        return failures or None

    setattr(route, BATCH_MARK, True)
    return route


async def _run_batch(
    message_type: MessageType, call: Call, items: Sequence[tuple[Message, Any]]
) -> dict[str, BaseException]:
    messages = [message for message, _ in items]
    payloads = [payload for _, payload in items]
    try:
        result = await call(arguments(message_type, payloads, messages))
    except HANDLER_ERRORS as exc:
        return {message.message_id: exc for message in messages}
    if result is None:
        return {}
    ids = {message.message_id for message in messages}
    if isinstance(result, Mapping) and all(key in ids for key in result):
        return dict(result)
    # Not this run's ids: the engine's check of the whole batch's answer says what was wrong.
    error = TypeError(f"the batch handler of {message_type.name!r} must return failures of its own messages")
    return {message.message_id: error for message in messages}


async def _run_in_order(
    runs: list[tuple[MessageType, list[tuple[Message, Any]]]],
    calls: Mapping[str | None, Call],
    failures: dict[str, BaseException],
    policy: RetryPolicy,
) -> None:
    """A FIFO batch: runs of one type one after the other, each message in the order received, and
    nothing more of a group once one of its messages failed for a retry. Those are not run: they go
    back with their group (:class:`~conveyor.processor.engine.outcome.NotRun`), which is delivered
    again from the failed one. A failure that ends its message (dead-lettered: permanent, or on its
    last receive) does not stop its group, as in the engine: the group goes on."""
    stopped: set[str] = set()
    for message_type, items in runs:
        call = calls[message_type.name]
        for position, (message, payload) in enumerate(items):
            if _group(message) in stopped:
                failures[message.message_id] = NotRun()
                continue
            if message_type.batch:  # the rest of the run of its groups still going, in one call
                rest = [item for item in items[position:] if _group(item[0]) not in stopped]
                skipped = {m.message_id for m, _ in items[position:]} - {m.message_id for m, _ in rest}
                failures |= dict.fromkeys(skipped, NotRun())
                failures |= await _run_batch(message_type, call, rest)
                stopped |= {
                    _group(m) for m, _ in rest if goes_back(failures.get(m.message_id), m.receive_count, policy)
                }
                break
            found = await _run_singles(message_type, call, [(message, payload)])
            failures |= found
            if goes_back(found.get(message.message_id), message.receive_count, policy):
                stopped.add(_group(message))


def _group(message: Message) -> str:
    return message.group_id or ""


async def _run_singles(
    message_type: MessageType, call: Call, items: Sequence[tuple[Message, Any]]
) -> dict[str, BaseException]:
    async def one(message: Message, payload: Any) -> BaseException | None:
        with log_context(message, message_type):
            try:
                await call(arguments(message_type, payload, message))
            except HANDLER_ERRORS as exc:
                return exc
            except asyncio.CancelledError as exc:
                if _cancelled_from_outside():
                    raise  # the worker's own cancellation (a stop), or a thread still running
                return exc  # the handler raised it itself: its failure, not its siblings'
        return None

    outcomes = list(await asyncio.gather(*(one(message, payload) for message, payload in items)))
    return {message.message_id: error for (message, _), error in zip(items, outcomes, strict=True) if error}


def _cancelled_from_outside() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def idempotency_of(app: App) -> IdempotencyOptions:
    """One set of options for the whole app, from each type's :func:`conveyor.idempotent`: the store
    is used when any type wants it; each message's key is its type's (its own key function's,
    prefixed with the type's name; a type that turned it off gets a key of its own delivery, so no
    copy of it is ever taken for another: not deduplicated)."""
    options = {t.name: idempotency_options(t.func) for t in app.all_types()}
    if not any(o.enabled for o in options.values()):
        return IdempotencyOptions(enabled=False)
    if all(o.enabled and o.key is None for o in options.values()):
        return IdempotencyOptions()

    def key(message: Message) -> str | int:
        try:
            own = options[app.resolve(type_of(message)).name]
        except PermanentError:
            own = IdempotencyOptions()
        if not own.enabled:
            return f"{message.message_id}#{message.receive_count}"
        if own.key is not None:
            found = own.key(message)
            if isinstance(found, bool) or not isinstance(found, str | int) or found == "":
                return found  # not a key: the store's side falls back to the message id, and says so
            # Each type's own keys apart: order o-1 created and order o-1 cancelled are two keys.
            return f"{type_of(message) or ''}{KEY_SEPARATOR}{found}"
        return message.attributes.get(IDEMPOTENCY_KEY) or message.message_id

    return IdempotencyOptions(key=key)
