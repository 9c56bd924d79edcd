"""The OpenAPI document with the app's message types: each payload's schema under its model's name,
and ``POST /messages`` (and each batch entry) as a union of one variant per type, discriminated by
``type``, with an example of each that `/docs` can send as it is."""

from __future__ import annotations

import copy
from typing import Any

from conveyor.contracts import App
from conveyor.schemas_of import example_body, payload_schemas

REF = "#/components/schemas/"
JSON = "application/json"


def add_message_types(schema: dict[str, Any], contracts: App) -> None:
    """Rewrite ``schema`` (FastAPI's document) in place for ``contracts``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    payloads, names = payload_schemas(contracts, REF)
    components.update(payloads)
    examples: dict[str, dict[str, Any]] = {
        (t.name or "default"): {"summary": t.name or "a message without a type", "value": _example(t.name, t, payloads)}
        for t in contracts.all_types()
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


def _example(name: str | None, message_type: Any, payloads: dict[str, dict[str, Any]]) -> dict[str, Any]:
    body = example_body(message_type, payloads, REF)
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
