"""The message's type, checked against the user's app before anything is sent: an unknown type, a
missing one (without a default handler) or a body that does not match the type's model is a 422
naming the field, so the client learns at once what the processor would only have dead-lettered."""

from __future__ import annotations

from conveyor.contracts import App, InvalidMessageError, UnknownMessageTypeError
from conveyor.writer.api.problems import EntryProblem

MAX_NAMED_TYPES = 20


def checked_type(contracts: App | None, type_name: str | None, body: str) -> None:
    """Check the message's type and body against the app; raises :class:`EntryProblem` (422).
    Without an app the type travels unchecked. The body is judged as the processor will judge it:
    its JSON text through the type's own adapter."""
    if contracts is None:
        return
    try:
        message_type = contracts.resolve(type_name)
    except UnknownMessageTypeError:
        raise _unknown(contracts, type_name) from None
    if message_type.typed:
        try:
            message_type.decode(body)
        except InvalidMessageError as exc:
            first = exc.errors[0]["field"] if exc.errors else "body"
            raise EntryProblem(422, "Invalid message", str(exc), field=first, errors=exc.errors) from None


def _unknown(contracts: App, type_name: str | None) -> EntryProblem:
    known = sorted(contracts.types)
    listed = ", ".join(known[:MAX_NAMED_TYPES]) + (" ..." if len(known) > MAX_NAMED_TYPES else "")
    if type_name is None:
        detail = f"type: a message needs a type (this app has no default handler); one of: {listed}"
    else:
        detail = f"type: no handler for message type {type_name!r}; one of: {listed or '(none)'}"
    return EntryProblem(422, "Invalid message", detail, field="type")
