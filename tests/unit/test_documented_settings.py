"""The configuration page's table is made from the settings classes (conveyor/settings_table.py):
every setting of every command is in it once, with its real default and the docstring it has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from conveyor.console.settings import ConsoleSettings
from conveyor.settings import CanarySettings, DevSettings, ProcessorSettings, SqsSettings, WriterSettings
from conveyor.settings_table import MARKER, READERS, markdown_table, rows, with_table

PAGE = Path(__file__).parents[2] / "docs" / "configuration.md"
CLASSES: list[type[BaseSettings]] = [WriterSettings, ProcessorSettings, DevSettings, CanarySettings, ConsoleSettings]


def test_the_page_has_the_table_made_at_build_time() -> None:
    page = PAGE.read_text()
    assert page.count(MARKER) == 1
    built = with_table(page)
    assert MARKER not in built
    assert markdown_table() in built


@pytest.mark.parametrize("settings", CLASSES, ids=lambda c: c.__name__)
def test_every_setting_has_a_docstring_the_table_shows(settings: type[BaseSettings]) -> None:
    undocumented = [name for name, field in settings.model_fields.items() if not (field.description or "").strip()]
    assert undocumented == []


def test_every_setting_is_in_the_table_once() -> None:
    variables = [variable.strip("`") for variable, *_ in rows()]
    assert len(variables) == len(set(variables))
    expected = {f"CONVEYOR_{name.upper()}" for settings in CLASSES for name in settings.model_fields}
    assert set(variables) == expected
    assert set(READERS.values()) == set(CLASSES)


def test_the_defaults_are_the_real_ones() -> None:
    shown = {variable.strip("`"): (default, readers) for variable, default, readers, _ in rows()}
    assert shown["CONVEYOR_CONCURRENCY"] == (str(ProcessorSettings().concurrency), "processor")
    assert shown["CONVEYOR_QUEUE_NAME"] == (f"`{SqsSettings().queue_name}`", "all")
    assert shown["CONVEYOR_WRITER_FAST_PATH"][0] == "`true`"
    assert shown["CONVEYOR_DEMO_WORK_SECONDS"][0] == "0.1"
    assert shown["CONVEYOR_CANARY_SECRET"][0] == "unset"  # a secret's default is never shown
    assert shown["CONVEYOR_CONSOLE_PORT"] == ("8002", "`conveyor console`")
    assert shown["CONVEYOR_CONSOLE_TOKEN"][0] == "unset"
    # a default that differs by command is given for each
    assert shown["CONVEYOR_SQS_READ_TIMEOUT_SECONDS"][0].startswith("writer 5, processor unset")
    assert shown["CONVEYOR_WRITER_PORT"] == ("8000", "writer, `conveyor dev`")


def test_a_meaning_cannot_break_the_table() -> None:
    for line in markdown_table().splitlines()[2:]:
        assert len(re.findall(r"(?<!\\)\|", line)) == 5, line  # four cells: no stray pipe, no line break
