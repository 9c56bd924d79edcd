"""The configuration table of the docs (docs/configuration.md) is the contract: every row names real
settings with the defaults they really have, and every setting is in the table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AnyUrl
from pydantic_settings import BaseSettings

from conveyor.settings import CanarySettings, DevSettings, ProcessorSettings, WriterSettings
from conveyor.sqs.client import READ_TIMEOUT_SECONDS

CONFIGURATION = Path(__file__).parents[2] / "docs" / "configuration.md"
SERVICES: dict[str, type[BaseSettings]] = {
    "writer": WriterSettings,
    "processor": ProcessorSettings,
    "dev": DevSettings,
    "canary": CanarySettings,
}
ROW = re.compile(r"^\| (`CONVEYOR_[A-Z_]+`(?: / `CONVEYOR_[A-Z_]+`)*) \| ([^|]+) \|")
NOT_A_VALUE = {"unset", "unset (real AWS)", "AWS chain", "hostname:pid"}  # no default: absent or computed


def documented() -> dict[str, str]:
    """Variable -> the default the docs give it."""
    rows: dict[str, str] = {}
    for line in CONFIGURATION.read_text().splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        names = re.findall(r"CONVEYOR_[A-Z_]+", match.group(1))
        defaults = [d.strip().strip("`") for d in match.group(2).split(" / ")]
        if len(defaults) == 1:
            defaults *= len(names)
        rows.update(zip(names, defaults, strict=True))
    return rows


def actual(service: type[BaseSettings], variable: str) -> object:
    field = variable.removeprefix("CONVEYOR_").lower()
    return service.model_fields[field].default


def same(text: str, value: object) -> bool:
    if text in NOT_A_VALUE:
        return value is None
    if isinstance(value, AnyUrl):
        return text.rstrip("/") == str(value).rstrip("/")
    if isinstance(value, bool):
        return text.lower() == str(value).lower()  # an environment variable says true or false
    if isinstance(value, str | Path) or value is None:
        return text == str(value)
    return float(text) == float(value)  # type: ignore[arg-type]  # an int or float setting


def test_every_setting_is_documented() -> None:
    rows = documented()
    missing = {
        f"CONVEYOR_{field.upper()}"
        for service in SERVICES.values()
        for field in service.model_fields
        if f"CONVEYOR_{field.upper()}" not in rows
    }
    assert missing == set()


@pytest.mark.parametrize("variable", sorted(documented()))
def test_each_documented_default_is_the_real_one(variable: str) -> None:
    text = documented()[variable]
    owners = [s for s in SERVICES.values() if variable.removeprefix("CONVEYOR_").lower() in s.model_fields]
    assert owners, f"{variable} is documented but no setting reads it"
    if variable == "CONVEYOR_SQS_READ_TIMEOUT_SECONDS":  # "writer 5, processor 30"
        per_service = dict(part.split() for part in text.split(", "))
        assert float(per_service["writer"]) == actual(WriterSettings, variable)
        assert actual(ProcessorSettings, variable) is None  # None: the client's own default
        assert float(per_service["processor"]) == READ_TIMEOUT_SECONDS
        return
    for service in owners:
        value = actual(service, variable)
        assert same(text, value), f"{variable}: docs/configuration.md says {text!r}, {service.__name__} has {value!r}"
