"""Typed message contracts: one definition of each message type, read by both services.

An :class:`App` maps a message type's name to its handler; the handler's first parameter's
annotation is the type's payload (a pydantic model, or anything a pydantic ``TypeAdapter`` takes).
The writer validates a posted body against it before sending (a bad one is a 422 the client sees);
the processor decodes and validates the same body with the same adapter before calling the handler,
so a message that reached SQS some other way is judged by the same rules. The type travels as the
message attribute ``conveyor.type``.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pydantic

from conveyor.errors import ConfigurationError
from conveyor.message import BATCH_MARK, Message, PermanentError

TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
TYPE_NAME_RULE = "1 to 128 letters, digits and . _ : / - (starting with a letter or digit)"
MAX_LISTED_ERRORS = 20


class InvalidMessageError(PermanentError):
    """The body does not match its type's model: permanent (it never will), so it is dead-lettered at
    once. ``errors`` lists each failing field (``body.<path>``) with pydantic's message, never the
    value (a body may hold what must not be copied into logs and records)."""

    __module__ = "conveyor"  # the public name, which dead-letter records and `conveyor dlq` filters show

    def __init__(self, message_type: str | None, errors: list[dict[str, str]], count: int | None = None) -> None:
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        total = len(errors) if count is None else count
        more = f" (and {total - 1} more)" if total > 1 else ""
        named = f"{message_type!r}" if message_type else "the default type"
        super().__init__(f"body does not match {named}: {first['field']}: {first['message']}{more}")
        self.message_type = message_type
        self.errors = errors


class UnknownMessageTypeError(PermanentError):
    """No handler for the message's ``conveyor.type`` (or no type and no default handler).
    Permanent for this deployment: redrive it from the DLQ once a handler for it is deployed."""

    __module__ = "conveyor"

    def __init__(self, message_type: str | None) -> None:
        what = f"no handler for message type {message_type!r}" if message_type else "no type and no default handler"
        super().__init__(what)
        self.message_type = message_type


class ContractError(ConfigurationError):
    """A handler that cannot be registered (bad name, signature or annotation); one readable line."""


def validation_errors(error: pydantic.ValidationError) -> list[dict[str, str]]:
    """Each failing field as ``body.<path>`` with pydantic's message; no input values."""
    found = []
    for item in error.errors(include_url=False, include_input=False, include_context=False)[:MAX_LISTED_ERRORS]:
        path = "".join(f".{part}" for part in item["loc"])
        found.append({"field": f"body{path}", "message": item["msg"]})
    return found


@dataclass(frozen=True, slots=True)
class Signature:
    """What a handler's parameters ask for."""

    payload: Any  # the payload's type; None: the handler takes the raw Message (untyped)
    passes_message: bool  # a second parameter: it gets the Message (or the list of them)


class MessageType:
    """One registered type: its name (None for the default), handler and payload adapter."""

    def __init__(self, name: str | None, func: Callable[..., Any], scope: dict[str, Any] | None = None) -> None:
        if not callable(func):
            raise ContractError(f"a handler must be a function, not {type(func).__name__}")
        self.name = name
        self.func = func
        self._scope = scope  # the names where it was defined, for annotations of local models

    @cached_property
    def signature(self) -> Signature:
        """Read when first used (at load, by :func:`load_app`), so that ``@conveyor.batch_handler``
        may come before or after the registration."""
        return signature_of(self.func, self._scope)

    @property
    def typed(self) -> bool:
        return self.signature.payload is not None

    @property
    def batch(self) -> bool:
        """Marked with :func:`conveyor.batch_handler` (read when used, so decorator order is free)."""
        return bool(getattr(self.func, BATCH_MARK, False))

    @cached_property
    def adapter(self) -> pydantic.TypeAdapter[Any]:
        return pydantic.TypeAdapter(self.signature.payload)

    @property
    def schema_name(self) -> str:
        """The payload's name in the API documents: the model's class name."""
        payload = self.signature.payload
        return getattr(payload, "__name__", None) or re.sub(r"\W+", "_", str(payload)).strip("_")

    def decode(self, body: str) -> Any:
        """The payload from the body's JSON text; raises :class:`InvalidMessageError`.

        A validator of the model that raises something pydantic does not take for a validation error
        (a ``KeyError`` in a ``model_validator``, say) fails on this body and would fail on it again:
        the body is invalid too, named by the exception's type (its text may hold the value)."""
        try:
            return self.adapter.validate_json(body)
        except pydantic.ValidationError as exc:
            raise InvalidMessageError(self.name, validation_errors(exc), count=exc.error_count()) from None
        except Exception as exc:  # noqa: BLE001 - the user's validator: see above
            failed = {"field": "body", "message": f"a validator of the model raised {type(exc).__name__}"}
            raise InvalidMessageError(self.name, [failed]) from None

    def describe(self) -> str:
        """For the start-up log: ``module:function``."""
        return f"{getattr(self.func, '__module__', '?')}:{getattr(self.func, '__qualname__', repr(self.func))}"


class App:
    """The message types a service knows, each with its handler::

        app = conveyor.App()

        @app.handler("order.created")
        async def on_order(order: OrderCreated, message: conveyor.Message) -> None: ...

    Load it in both services with ``CONVEYOR_APP=package.module:app``.
    """

    def __init__(self) -> None:
        self._types: dict[str, MessageType] = {}
        self._default: MessageType | None = None

    def handler[F: Callable[..., Any]](self, name: str) -> Callable[[F], F]:
        """Register the decorated function as the handler of message type ``name``."""
        if not isinstance(name, str) or not TYPE_NAME.fullmatch(name):
            raise ContractError(f"a message type's name is {TYPE_NAME_RULE}; not {name!r}")
        if name in self._types:
            raise ContractError(f"message type {name!r} has two handlers")

        def register(func: F) -> F:
            self._types[name] = MessageType(name, func, _definer_scope())
            return func

        return register

    def default[F: Callable[..., Any]](self, func: F) -> F:
        """Register the handler of messages that carry no type (typed by its annotation, or untyped)."""
        if self._default is not None:
            raise ContractError("the app has two default handlers")
        self._default = MessageType(None, func, _definer_scope())
        return func

    @property
    def types(self) -> Mapping[str, MessageType]:
        return dict(self._types)

    @property
    def default_type(self) -> MessageType | None:
        return self._default

    def all_types(self) -> list[MessageType]:
        return [*self._types.values(), *([self._default] if self._default else [])]

    def resolve(self, name: str | None) -> MessageType:
        """The type a message of ``name`` is handled as; raises :class:`UnknownMessageTypeError`."""
        found = self._default if name is None else self._types.get(name)
        if found is None:
            raise UnknownMessageTypeError(name)
        return found

    def describe(self) -> dict[str, str]:
        """Type name -> handler, for the start-up log (the default as ``(default)``)."""
        return {(t.name or "(default)"): t.describe() for t in self.all_types()}


def _definer_scope() -> dict[str, Any] | None:
    """The local names of the code that applied the decorator (two frames up): a handler defined in a
    function (a test's, say) may annotate with a model defined beside it. A copy, so no frame is kept."""
    frame = sys._getframe(2)  # what typing needs for forward references to local names, as pydantic does
    return None if frame.f_locals is frame.f_globals else dict(frame.f_locals)


def signature_of(func: Callable[..., Any], scope: dict[str, Any] | None = None) -> Signature:
    """The payload type from the first parameter's annotation; a second parameter gets the Message.
    ``Message`` (or none) as the first annotation: an untyped handler. A batch handler's annotations
    are lists (``list[Model]``, ``list[Message]``)."""
    where = getattr(func, "__qualname__", repr(func))
    try:
        parameters = [
            p for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]  # fmt: skip
        hints = typing.get_type_hints(func, localns=scope)
    except (NameError, TypeError, ValueError) as exc:
        raise ContractError(f"cannot read the annotations of handler {where}: {exc}") from exc
    if not 1 <= len(parameters) <= 2:
        raise ContractError(f"handler {where} must take 1 or 2 parameters (the payload, then the message)")
    first = hints.get(parameters[0].name)
    annotation = _element(first) if getattr(func, BATCH_MARK, False) else first
    if annotation is None or annotation is Message:
        return Signature(None, len(parameters) == 2)
    try:
        pydantic.TypeAdapter(annotation)
    except pydantic.PydanticSchemaGenerationError as exc:
        raise ContractError(f"handler {where}: pydantic cannot validate {annotation!r}: {exc}") from None
    return Signature(annotation, len(parameters) == 2)


def _element(annotation: Any) -> Any:
    """``list[X]`` -> X (a batch handler's payload type); anything else is not a batch's annotation."""
    if typing.get_origin(annotation) in (list, abc.Sequence):
        args = typing.get_args(annotation)
        return args[0] if args else None
    if annotation is None:
        return None
    raise ContractError(
        f"a batch handler's first parameter is a list (list[Model] or list[Message]), not {annotation!r}"
    )


def load_app(target: object, spec: str) -> App:
    """``target`` (what ``spec`` named) as an App; raises :class:`ContractError`."""
    if not isinstance(target, App):
        raise ContractError(f"CONVEYOR_APP={spec!r} is not a conveyor.App but {type(target).__name__}")
    if not target.all_types():
        raise ContractError(f"CONVEYOR_APP={spec!r} has no handlers")
    for message_type in target.all_types():
        _ = message_type.signature  # every handler's annotations checked at start-up, not on its first message
    return target
