"""The queue as an AsyncAPI 3.0.0 document: one channel (the queue), one message per type of the
user's app with its payload's schema, and the ``conveyor.*`` attributes as the messages' headers.
`conveyor asyncapi` prints it; the writer serves it at ``/asyncapi.json``."""

from __future__ import annotations

import re
from typing import Any

from conveyor import __version__, metadata
from conveyor.contracts import App, MessageType
from conveyor.schemas_of import example_body, payload_schemas

VERSION = "3.0.0"
REF = "#/components/schemas/"
_KEY = re.compile(r"[^A-Za-z0-9._-]")  # what AsyncAPI allows in a component's key


def document(app: App | None, queue_name: str) -> dict[str, Any]:
    """The document for ``app`` (None: one untyped message, any JSON) on the queue ``queue_name``."""
    schemas, _ = payload_schemas(app, REF) if app else ({}, {})
    types = app.all_types() if app else []
    messages = {_key(t): _message(t, schemas) for t in types} or {"message": _untyped()}
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
        "components": {"messages": messages, "schemas": schemas | {"ConveyorHeaders": _headers()}},
    }


def _key(message_type: MessageType) -> str:
    return _KEY.sub("_", message_type.name) if message_type.name else "default"


def _message(message_type: MessageType, schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    payload = {"$ref": REF + message_type.schema_name} if message_type.typed else {}
    found: dict[str, Any] = {
        "name": message_type.name or "default",
        "title": message_type.name or "A message without a type",
        "summary": f"Handled by {message_type.describe()}",
        "contentType": "application/json",
        "headers": {"$ref": REF + "ConveyorHeaders"},
        "payload": payload,
        "examples": [{"name": "example", "payload": example_body(message_type, schemas, REF)}],
    }
    if message_type.name:
        found["headers"] = {
            "allOf": [
                {"$ref": REF + "ConveyorHeaders"},
                {"type": "object", "properties": {metadata.TYPE: {"type": "string", "const": message_type.name}},
                 "required": [metadata.TYPE]},
            ]
        }  # fmt: skip
    return found


def _untyped() -> dict[str, Any]:
    return {
        "name": "message",
        "title": "Any JSON body",
        "contentType": "application/json",
        "headers": {"$ref": REF + "ConveyorHeaders"},
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
