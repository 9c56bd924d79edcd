"""The JSON schemas of an app's message types, as both API documents use them: each payload's schema
under its model's name (nested models beside it, not inside), and an example body built from it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import pydantic
from pydantic.json_schema import JsonSchemaMode

from conveyor.contracts import App, InvalidMessageError, MessageType

MAX_EXAMPLE_DEPTH = 6
COMPONENT_KEY = re.compile(r"[^A-Za-z0-9._-]")  # what both documents refuse in a component's key


def payload_schemas(app: App, ref_prefix: str) -> tuple[dict[str, dict[str, Any]], dict[str | None, str]]:
    """(schemas by key, each typed type's payload key by type name): nested definitions beside the
    payloads, referenced as ``<ref_prefix><key>``.

    All payloads in one generation, so that pydantic gives two models of one name (in two modules)
    two keys instead of one overwriting the other; a payload that is not a model (``list[Order]``)
    gets a schema of its own under its name, made unique the same way."""
    typed = [t for t in app.all_types() if t.typed]
    if not typed:
        return {}, {}
    mode: JsonSchemaMode = "validation"  # a body as the writer validates it
    inputs = [(id(t), mode, t.adapter) for t in typed]
    try:
        by_type, defs = pydantic.TypeAdapter.json_schemas(inputs, ref_template=ref_prefix + "{model}")
    except pydantic.PydanticUserError:  # a type pydantic validates but cannot describe
        by_type, defs = _one_by_one(typed, mode, ref_prefix), {}
    found: dict[str, dict[str, Any]] = dict(defs.get("$defs", {}))
    keys: dict[str | None, str] = {}
    for message_type in typed:
        schema = by_type[(id(message_type), mode)]
        ref = schema.get("$ref", "") if len(schema) == 1 else ""
        if ref.startswith(ref_prefix):
            key = ref.removeprefix(ref_prefix)
        else:
            key = unique(COMPONENT_KEY.sub("_", message_type.schema_name), found)
            found[key] = schema
        keys[message_type.name] = key
    return found, keys


def _one_by_one(
    typed: list[MessageType], mode: JsonSchemaMode, ref_prefix: str
) -> dict[tuple[int, JsonSchemaMode], dict[str, Any]]:
    """Each type's schema alone, nested definitions inline; one that cannot be described is an open
    schema that says so (the documents still serve; validation is unchanged)."""
    found: dict[tuple[int, JsonSchemaMode], dict[str, Any]] = {}
    for message_type in typed:
        try:
            schema = message_type.adapter.json_schema(ref_template=ref_prefix + "{model}")
            schema.pop("$defs", None)
        except pydantic.PydanticUserError:
            schema = {"description": f"{message_type.schema_name}: pydantic cannot describe it as a JSON schema"}
        found[(id(message_type), mode)] = schema
    return found


def unique(key: str, taken: Iterable[str]) -> str:
    """``key``, or ``key_2``, ``key_3`` ... : the first not in ``taken``."""
    taken = set(taken)
    n, found = 1, key
    while found in taken:
        n += 1
        found = f"{key}_{n}"
    return found


def example_body(
    message_type: MessageType, schemas: dict[str, dict[str, Any]], key: str | None, ref_prefix: str
) -> Any:
    """A body that matches the type's schema (``schemas[key]``): its own ``examples`` when it has
    one, else a value of each required field's type; None when what can be made of the schema does
    not pass the type's validation (a pattern, a bound): no example rather than a wrong one."""
    if not message_type.typed or key is None:
        return {"any": "JSON"}
    example = _example(schemas[key], schemas, ref_prefix, 0)
    try:
        message_type.decode(json.dumps(example))
    except (InvalidMessageError, TypeError, ValueError):
        return None
    return example


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
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    simple = {"string": _string(schema), "boolean": True, "null": None}
    return simple.get(str(kind), "string")


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    """1 (or 1.5), moved inside the schema's bounds."""
    value: float = 1 if integer else 1.5
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(low, int | float) and value <= low:
        value = low + 1 if integer or "exclusiveMinimum" in schema else low
    if isinstance(high, int | float) and value >= high:
        value = high - 1 if integer or "exclusiveMaximum" in schema else high
    return int(value) if integer else value


def _string(schema: dict[str, Any]) -> str:
    formats = {
        "date-time": "2026-01-01T00:00:00Z",
        "date": "2026-01-01",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    formats |= {"email": "user@example.com", "uri": "https://example.com/"}
    text = formats.get(str(schema.get("format")), "string")
    longest, shortest = schema.get("maxLength"), schema.get("minLength")
    if isinstance(longest, int):
        text = text[:longest]
    if isinstance(shortest, int) and len(text) < shortest:
        text += "x" * (shortest - len(text))
    return text
