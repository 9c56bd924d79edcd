"""The configuration table of the docs, made from the settings classes themselves: every variable,
its default and its meaning (each field's docstring), and which commands read it. One source: the
docs cannot say a default or a setting the code does not have."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AnyUrl, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from conveyor.console.settings import ConsoleSettings
from conveyor.settings import CanarySettings, DevSettings, ProcessorSettings, SqsSettings, WriterSettings

MARKER = "<!-- the settings table, made from conveyor/settings.py -->"
READERS: dict[str, type[BaseSettings]] = {
    "writer": WriterSettings,
    "processor": ProcessorSettings,
    "`conveyor dev`": DevSettings,
    "`conveyor canary`": CanarySettings,
    "`conveyor console`": ConsoleSettings,
}
SHARED = set(SqsSettings.model_fields)  # every command reads these


def rows() -> list[tuple[str, str, str, str]]:
    """(variable, default, read by, meaning) for every setting, in the order the classes declare them."""
    found: dict[str, tuple[str, str, str, str]] = {}
    classes: list[type[BaseSettings]] = [SqsSettings, *READERS.values()]  # what every command reads first
    for settings in classes:
        for name in settings.model_fields:
            if name not in found:
                variable = f"`CONVEYOR_{name.upper()}`"
                found[name] = (variable, _defaults(name), _readers(name), _meaning(settings, name))
    return list(found.values())


def markdown_table() -> str:
    lines = ["| variable | default | read by | meaning |", "|---|---|---|---|"]
    lines += [f"| {variable} | {default} | {readers} | {meaning} |" for variable, default, readers, meaning in rows()]
    return "\n".join(lines)


def with_table(markdown: str) -> str:
    """``markdown`` with the marker replaced by the table (a page without it is returned as it is)."""
    return markdown.replace(MARKER, markdown_table())


def _readers(name: str) -> str:
    if name in SHARED:
        return "all"
    return ", ".join(reader for reader, settings in READERS.items() if name in settings.model_fields)


def _defaults(name: str) -> str:
    """The default, or each reader's when they differ (``writer 5, processor unset``)."""
    shown = {reader: _shown(settings.model_fields[name]) for reader, settings in READERS.items()
             if name in settings.model_fields}  # fmt: skip
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return ", ".join(f"{reader} {value.strip('`')}" for reader, value in shown.items())


def _shown(field: FieldInfo) -> str:
    value = field.default
    if value is None or isinstance(value, SecretStr):
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"  # as an environment variable says it
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, AnyUrl):
        return f"`{str(value).rstrip('/')}`"
    return f"`{value}`" if isinstance(value, str | Path) else str(value)


def _meaning(settings: type[BaseSettings], name: str) -> str:
    # (SqsSettings is read through each command's class: the same field, the same docstring)
    text = settings.model_fields[name].description or ""
    return re.sub(r"\s+", " ", text).replace("|", "\\|").strip()
