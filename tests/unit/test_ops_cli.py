"""The command line as a new user meets it: --help and --version exit 0, a bad flag or a missing
secret is one line, and the demo handler logs the body as JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from conveyor.cli import conveyor_main, processor_command, writer_command
from conveyor.handlers import demo
from conveyor.message import Message
from conveyor.settings import ProcessorSettings


def exit_code(entry: Callable[[], None]) -> int | str | None:
    with pytest.raises(SystemExit) as exit_info:
        entry()
    return exit_info.value.code


@pytest.mark.parametrize(
    ("entry", "name"),
    [
        (lambda: writer_command(["--help"]), "queue-writer"),
        (lambda: processor_command(["--help"]), "queue-processor"),
        (lambda: conveyor_main(["--help"]), "conveyor"),
        (lambda: conveyor_main(["canary", "--help"]), "conveyor canary"),
        (lambda: conveyor_main(["dlq", "redrive", "--help"]), "conveyor dlq redrive"),
    ],
)
def test_help_exits_0(entry: Callable[[], None], name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(entry) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {name}")


def test_the_services_help_lists_their_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(lambda: processor_command(["--help"])) == 0
    out = capsys.readouterr().out
    assert "CONVEYOR_HANDLER" in out
    assert "conveyor.handlers:demo" in out
    assert "CONVEYOR_CANARY_SECRET" in out
    assert "docs/configuration.md" in out
    assert exit_code(lambda: writer_command(["--help"])) == 0
    assert "CONVEYOR_WRITER_PORT" in capsys.readouterr().out


@pytest.mark.parametrize("entry", [lambda: conveyor_main(["--version"]), lambda: processor_command(["--version"])])
def test_version_exits_0(entry: Callable[[], None], capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(entry) == 0
    assert capsys.readouterr().out.strip().endswith(" 0.1.0")


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["canary", "--interval", "0"], "conveyor canary: argument --interval: must be a number of seconds above 0"),
        (["canary", "--url", "ftp://x"], "conveyor canary: argument --url: must be an http:// or https:// URL"),
        (["canary", "--metrics-port", "70000"], "conveyor canary: argument --metrics-port: must be a port number"),
        (["dlq", "redrive", "--older-than", "-1"], "conveyor dlq redrive: argument --older-than: must be a number"),
        (["dlq", "peek", "--limit", "0"], "conveyor dlq peek: argument --limit: must be a whole number of at least 1"),
        (["dlq", "export"], "conveyor dlq export: the following arguments are required: FILE"),
        (["dlq"], "conveyor dlq: the following arguments are required: action"),
        (["nope"], "conveyor: argument command: invalid choice: 'nope'"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(argv: list[str], start: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(lambda: conveyor_main(argv)) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(start), line
    assert line.endswith("(see --help)")
    assert captured.out == ""


def test_purge_refuses_without_yes(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(lambda: conveyor_main(["dlq", "purge"])) == 2
    assert capsys.readouterr().err == (
        "conveyor dlq purge: refusing without --yes (it deletes every message of the dead-letter queue)\n"
    )


def test_the_canary_needs_the_secret(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CONVEYOR_CANARY_SECRET", raising=False)
    assert exit_code(lambda: conveyor_main(["canary", "--once"])) == 2
    assert capsys.readouterr().err == "conveyor canary: CONVEYOR_CANARY_SECRET is not set (the processors' secret)\n"


def test_the_secret_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CANARY_SECRET", "do-not-print-this-secret")
    settings = ProcessorSettings()
    assert "do-not-print" not in repr(settings)
    assert "do-not-print" not in str(settings.model_dump())
    monkeypatch.setenv("CONVEYOR_CANARY_SECRET", "short")
    with pytest.raises(ValueError, match="must be at least 16 characters") as error:
        ProcessorSettings()
    assert "short" not in str(error.value.errors()[0]["msg"])  # type: ignore[attr-defined]


def test_the_demo_handler_logs_the_body_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_DEMO_WORK_SECONDS", "0")
    with capture_logs() as logs:
        asyncio.run(demo(Message("m-1", '{"hello":"dev","n":[1,true,null]}')))
    [event] = [e for e in logs if e["event"] == "demo_handled"]
    assert event["body"] == '{"hello":"dev","n":[1,true,null]}'
