"""The JSON schemas of an app's message types, as both API documents use them: each payload's schema
under its model's name (nested models beside it, not inside), and an example body built from it."""

from __future__ import annotations

from typing import Any

from conveyor.contracts import App, MessageType

MAX_EXAMPLE_DEPTH = 6


def payload_schemas(app: App, ref_prefix: str) -> tuple[dict[str, dict[str, Any]], dict[str | None, str]]:
    """(schemas by name, each type's schema name): nested definitions hoisted beside the payloads and
    referenced as ``<ref_prefix><name>``."""
    schemas: dict[str, dict[str, Any]] = {}
    names: dict[str | None, str] = {}
    for message_type in app.all_types():
        if not message_type.typed:
            continue
        schema = message_type.adapter.json_schema(ref_template=ref_prefix + "{model}")
        schemas.update(schema.pop("$defs", {}))
        name = message_type.schema_name
        schemas[name] = schema
        names[message_type.name] = name
    return schemas, names


def example_body(message_type: MessageType, schemas: dict[str, dict[str, Any]], ref_prefix: str) -> Any:
    """A body that matches the type's schema: its own ``examples`` when it has one, else a value of
    each required field's type."""
    if not message_type.typed:
        return {"any": "JSON"}
    return _example(schemas[message_type.schema_name], schemas, ref_prefix, 0)


def _example(schema: dict[str, Any], schemas: dict[str, dict[str, Any]], prefix: str, depth: int) -> Any:
    if depth > MAX_EXAMPLE_DEPTH:
        return None
    given = _given(schema)
    if given:
        return given[0]
    if "$ref" in schema:
        return _example(schemas.get(schema["$ref"].removeprefix(prefix), {}), schemas, prefix, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _example(schema[key][0], schemas, prefix, depth + 1)
    return _of_type(schema, schemas, prefix, depth)


def _given(schema: dict[str, Any]) -> tuple[Any] | None:
    """A value the schema itself offers (its example, default, constant or first choice)."""
    for key, first in (("examples", True), ("default", False), ("const", False), ("enum", True)):
        if key in schema and (not first or schema[key]):
            return (schema[key][0] if first else schema[key],)
    return None


def _of_type(schema: dict[str, Any], schemas: dict[str, dict[str, Any]], prefix: str, depth: int) -> Any:
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _example(properties[name], schemas, prefix, depth + 1) for name in schema.get("required", [])}
    if kind == "array":
        return [_example(schema.get("items", {}), schemas, prefix, depth + 1)]
    simple = {"string": _string(schema), "integer": 1, "number": 1.5, "boolean": True, "null": None}
    return simple.get(str(kind), "string")


def _string(schema: dict[str, Any]) -> str:
    formats = {
        "date-time": "2026-01-01T00:00:00Z",
        "date": "2026-01-01",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    formats |= {"email": "user@example.com", "uri": "https://example.com/"}
    return formats.get(str(schema.get("format")), "string")
