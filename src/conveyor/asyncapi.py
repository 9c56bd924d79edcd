"""The queue as an AsyncAPI 3.0.0 document: one channel (the queue), one message per type of the
user's app with its payload's schema, and the ``conveyor.*`` attributes as the messages' headers.
`conveyor asyncapi` prints it; the writer serves it at ``/asyncapi.json``.

Its schemas are AsyncAPI 3.0's default format, a superset of JSON Schema draft 07, while pydantic
writes JSON Schema 2020-12: :func:`draft07` rewrites what the two read differently (see there)."""

from __future__ import annotations

from typing import Any

from conveyor import __version__, metadata
from conveyor.contracts import App, MessageType
from conveyor.schemas_of import COMPONENT_KEY, example_body, payload_schemas, unique

VERSION = "3.0.0"
REF = "#/components/schemas/"
HEADERS = "ConveyorHeaders"


def document(app: App | None, queue_name: str) -> dict[str, Any]:
    """The document for ``app`` (None: one untyped message, any JSON) on the queue ``queue_name``."""
    types = app.all_types() if app else []
    schemas, payloads, examples = _schemas(types, app) if app else ({}, {}, {})
    headers = unique(HEADERS, schemas)  # a user's model may be called ConveyorHeaders too
    keys = _keys(types)
    messages = {
        key: _message(t, payloads.get(id(t)), examples.get(id(t)), headers) for key, t in zip(keys, types, strict=True)
    } or {"message": _untyped(headers)}
    refs = [{"$ref": f"#/channels/queue/messages/{key}"} for key in messages]
    return {
        "asyncapi": VERSION,
        "info": {
            "title": f"Conveyor queue {queue_name}",
            "version": __version__,
            "description": "Messages the queue-writer accepts (POST /messages) and the queue-processor handles.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "queue": {
                "address": queue_name,
                "description": "The SQS queue.",
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
            }
        },
        "operations": {
            "send": {
                "action": "send",
                "channel": {"$ref": "#/channels/queue"},
                "messages": refs,
                "summary": "The queue-writer sends each accepted message.",
            },
            "receive": {
                "action": "receive",
                "channel": {"$ref": "#/channels/queue"},
                "messages": refs,
                "summary": "The queue-processor runs the type's handler on it.",
            },
        },
        "components": {"messages": messages, "schemas": schemas | {headers: _headers()}},
    }


def _schemas(types: list[MessageType], app: App) -> tuple[dict[str, Any], dict[int, str], dict[int, Any]]:
    """(the schemas by key, each typed type's payload key, each typed type's example body), types by id."""
    found, keys = payload_schemas(app, REF)
    payloads = {id(t): keys[t.name] for t in types if t.name in keys}
    examples = {id(t): example_body(t, found, keys[t.name], REF) for t in types if t.name in keys}
    return {key: draft07(schema) for key, schema in found.items()}, payloads, examples


def _keys(types: list[MessageType]) -> list[str]:
    """Each type's message key, unique: type names differ, but two may be alike once what AsyncAPI
    does not allow in a key is replaced (``a/b``, ``a:b``), and a type may be called ``default``."""
    keys: list[str] = []
    for message_type in types:
        keys.append(unique(_key(message_type), keys))
    return keys


def _key(message_type: MessageType) -> str:
    return COMPONENT_KEY.sub("_", message_type.name) if message_type.name else "default"


def _message(message_type: MessageType, payload_key: str | None, example: Any, headers: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": message_type.name or "default",
        "title": message_type.name or "A message without a type",
        "summary": f"Handled by {message_type.describe()}",
        "contentType": "application/json",
        "headers": {"$ref": REF + headers},
        "payload": {"$ref": REF + payload_key} if payload_key else {},
    }
    if example is not None or not payload_key:  # no example rather than one that does not validate
        found["examples"] = [{"name": "example", "payload": example if payload_key else {"any": "JSON"}}]
    if message_type.name:
        found["headers"] = {
            "allOf": [
                {"$ref": REF + headers},
                {"type": "object", "properties": {metadata.TYPE: {"type": "string", "const": message_type.name}},
                 "required": [metadata.TYPE]},
            ]
        }  # fmt: skip
    return found


def _untyped(headers: str) -> dict[str, Any]:
    return {
        "name": "message",
        "title": "Any JSON body",
        "contentType": "application/json",
        "headers": {"$ref": REF + headers},
        "payload": {},
    }


def _headers() -> dict[str, Any]:
    """The message attributes Conveyor sets (SQS message attributes, strings)."""
    described = {
        metadata.TYPE: "The message type's name (its handler in the app).",
        metadata.REQUEST_ID: "The writer's request id (X-Request-ID), on every log line about the message.",
        metadata.CONTENT_TYPE: "The request's content type.",
        metadata.IDEMPOTENCY_KEY: "The client's Idempotency-Key, when it sent one.",
        metadata.TRACEPARENT: "W3C trace context, with tracing on.",
    }
    return {
        "type": "object",
        "description": "SQS message attributes set by the queue-writer; the user's own attributes beside them.",
        "properties": {name: {"type": "string", "description": text} for name, text in described.items()},
    }


# Where a schema holds schemas: one, a list of them, or a map of names to them. Everything else
# (enum, const, default, examples, required...) is a value, copied as it is.
_ONE = ("items", "additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if", "then", "else")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "patternProperties", "dependencies", "dependentSchemas", "definitions", "$defs")


def draft07(schema: Any) -> Any:
    """``schema`` (pydantic's JSON Schema 2020-12) as AsyncAPI 3.0 reads schemas (draft 07 and a few
    keywords of its own):

    - a ``$ref`` beside other keywords: draft 07 ignores the others, so a field's ``default`` or
      ``description`` next to its model's or enum's ``$ref`` would be lost; the ``$ref`` goes into an
      ``allOf`` of one, which keeps both;
    - ``discriminator``: pydantic writes OpenAPI's object (propertyName and mapping) on a ``oneOf``,
      where AsyncAPI's is a property name of the schema itself, so the parser rejects it; dropped, as
      the ``oneOf``'s branches already tell themselves apart by their tag's ``const``;
    - ``prefixItems`` (a tuple) is draft 07's ``items`` as a list, and ``items`` beside it (the rest of
      the tuple) is ``additionalItems``: else the positions' types would be ignored.
    """
    if not isinstance(schema, dict):
        return schema
    found: dict[str, Any] = {}
    for word, value in schema.items():
        if word in _ONE:
            found[word] = draft07(value)
        elif word in _LIST and isinstance(value, list):
            found[word] = [draft07(item) for item in value]
        elif word in _MAP and isinstance(value, dict):
            found[word] = {name: draft07(item) for name, item in value.items()}
        elif word == "discriminator" and isinstance(value, dict):
            continue
        else:
            found[word] = value
    if "prefixItems" in found:
        rest = found.pop("items", None)
        found["items"] = found.pop("prefixItems")
        if rest is not None:
            found["additionalItems"] = rest
    if "$ref" in found and len(found) > 1:
        found = {"allOf": [{"$ref": found.pop("$ref")}], **found}
    return found
