"""The OpenAPI document with the app's message types: each payload's schema under its model's name,
and ``POST /messages`` (and each batch entry) as a union of one variant per type, discriminated by
``type``, with an example of each that `/docs` can send as it is."""

from __future__ import annotations

import copy
from typing import Any

from conveyor.contracts import App
from conveyor.schemas_of import example_body, payload_schemas, unique

REF = "#/components/schemas/"
JSON = "application/json"


def add_message_types(schema: dict[str, Any], contracts: App) -> None:
    """Rewrite ``schema`` (FastAPI's document) in place for ``contracts``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    payloads, names = apart_from(components, *payload_schemas(contracts, REF))
    components.update(payloads)
    examples: dict[str, dict[str, Any]] = {}
    for message_type in contracts.all_types():
        value = _example(message_type.name, message_type, payloads, names.get(message_type.name))
        if value is not None:  # (none when no body made from the schema validates: better than a wrong one)
            examples[message_type.name or "default"] = {
                "summary": message_type.name or "a message without a type",
                "value": value,
            }
    for route, base in (("/messages", "MessageIn"), ("/messages/batch", "BatchEntryIn")):
        variants = _variants(components, base, contracts, names)
        union = _union(variants, default=contracts.default_type is not None)
        body = schema["paths"][route]["post"]["requestBody"]["content"][JSON]
        if route == "/messages":
            body["schema"] = union
            body["examples"] = examples
        else:
            batch = copy.deepcopy(components["BatchIn"])
            batch["properties"]["messages"]["items"] = union
            components["BatchIn"] = batch
            body["examples"] = {
                "one of each": {
                    "value": {"messages": [{"id": f"e{i}", **e["value"]} for i, e in enumerate(examples.values())]}
                }
            }


def apart_from(
    components: dict[str, Any], payloads: dict[str, dict[str, Any]], names: dict[str | None, str]
) -> tuple[dict[str, dict[str, Any]], dict[str | None, str]]:
    """The payloads' schemas under keys the document does not use yet (a user's model may be called
    ``Problem`` or ``MessageIn``): those renamed, and every reference to them."""
    renamed: dict[str, str] = {}
    for key in payloads:
        if key in components:
            renamed[key] = unique(key, {*components, *payloads, *renamed.values()})
    if not renamed:
        return payloads, names
    moved = {renamed.get(key, key): _with_refs(schema, renamed) for key, schema in payloads.items()}
    return moved, {name: renamed.get(key, key) for name, key in names.items()}


def _with_refs(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF) and ref.removeprefix(REF) in renamed:
            return {**node, "$ref": REF + renamed[ref.removeprefix(REF)]}
        return {key: _with_refs(value, renamed) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_refs(item, renamed) for item in node]
    return node


def _example(
    name: str | None, message_type: Any, payloads: dict[str, dict[str, Any]], key: str | None
) -> dict[str, Any] | None:
    body = example_body(message_type, payloads, key, REF)
    if body is None:
        return None
    return {"type": name, "body": body} if name else {"body": body}


def _variants(components: dict[str, Any], base: str, contracts: App, names: dict[str | None, str]) -> dict[str, str]:
    """One schema per type (``<base>_<schema name>``): the base message with ``type`` fixed and
    ``body`` the payload's schema. Returns type name -> its variant's reference."""
    refs: dict[str, str] = {}
    for message_type in contracts.all_types():
        variant = copy.deepcopy(components[base])
        properties = variant["properties"]
        key = message_type.name or "default"
        if message_type.name is None:
            properties.pop("type", None)
            variant["title"] = f"{base} (no type)"
        else:
            properties["type"] = {"type": "string", "const": message_type.name, "title": "Type"}
            variant["required"] = sorted({*variant.get("required", []), "type"})
            variant["title"] = f"{base} ({message_type.name})"
        if message_type.name in names:
            properties["body"] = {"$ref": REF + names[message_type.name]}
        variant_name = f"{base}_{names.get(message_type.name, 'Any')}_{_safe(key)}"
        components[variant_name] = variant
        refs[key] = REF + variant_name
    return refs


def _union(refs: dict[str, str], *, default: bool) -> dict[str, Any]:
    union: dict[str, Any] = {"oneOf": [{"$ref": ref} for ref in refs.values()]}
    if not default:  # a variant without `type` cannot be told by it: the discriminator only without one
        union["discriminator"] = {"propertyName": "type", "mapping": dict(refs)}
    return union


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)
