"""Settings and the command line: a wrong value exits non-zero with one readable line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.cli import conveyor_main, processor_main, writer_main
from conveyor.settings import ProcessorSettings, WriterSettings
from conveyor.writer.app import create_app

OPENAPI = Path(__file__).parents[2] / "docs" / "openapi.json"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CONCURRENCY", "7")
    monkeypatch.setenv("CONVEYOR_SQS_ENDPOINT_URL", "http://127.0.0.1:4566")
    settings = ProcessorSettings()
    assert settings.concurrency == 7
    assert settings.endpoint == "http://127.0.0.1:4566"


@pytest.mark.parametrize(
    ("name", "value", "entry"),
    [
        ("CONVEYOR_SQS_ENDPOINT_URL", "not-a-url", lambda: conveyor_main(["queues", "create"])),
        ("CONVEYOR_WRITER_PORT", "99999", writer_main),
        ("CONVEYOR_CONCURRENCY", "0", processor_main),
        ("CONVEYOR_PROCESSES", "0", processor_main),
    ],
)
def test_a_wrong_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str, entry: object
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        entry()  # type: ignore[operator]
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert f"invalid setting {name}" in lines[0]


@pytest.mark.parametrize("processes", ["1", "2"])  # with 2, checked once by the supervisor, before any child
def test_a_handler_that_does_not_import_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], processes: str
) -> None:
    monkeypatch.setenv("CONVEYOR_PROCESSES", processes)
    monkeypatch.setenv("CONVEYOR_HANDLER", "no.such.module:handle")
    with pytest.raises(SystemExit) as exit_info:
        processor_main()
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("queue-processor: cannot import handler module 'no.such.module'")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_an_app_that_does_not_load_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], processes: str
) -> None:
    monkeypatch.setenv("CONVEYOR_PROCESSES", processes)
    monkeypatch.setenv("CONVEYOR_APP", "tests.typed_app:Currency")
    with pytest.raises(SystemExit) as exit_info:
        processor_main()
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == "queue-processor: CONVEYOR_APP='tests.typed_app:Currency' is not a conveyor.App but EnumType"


@pytest.mark.parametrize("main", [processor_main, writer_main])
def test_an_app_module_that_does_not_import_stops_either_service_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], main: Callable[[], None]
) -> None:
    monkeypatch.setenv("CONVEYOR_APP", "no_such_shop.messages:app")
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert ": cannot import app module 'no_such_shop.messages'" in line


def test_an_app_and_a_handler_both_set_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVEYOR_APP", "tests.typed_app:app")
    monkeypatch.setenv("CONVEYOR_HANDLER", "tests.handlers:work")
    with pytest.raises(SystemExit) as exit_info:
        processor_main()
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "set CONVEYOR_APP (an app of typed handlers) or CONVEYOR_HANDLER (one handler), not both" in line


def test_committed_openapi_document_is_current() -> None:
    current = create_app(WriterSettings()).openapi()
    assert json.loads(OPENAPI.read_text()) == current, "run `make openapi` and commit docs/openapi.json"
