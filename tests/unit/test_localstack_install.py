"""The embedded LocalStack's first-run install: made once under CONVEYOR_HOME, reused afterwards,
never left half-made, and the lock it installs ships with the package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from conveyor import localstack_install
from conveyor.localstack_install import READY_MARK, ProvisionError, ensure, lock_text, venv_dir

LOCK = "localstack-core==2026.3.0\n"


class Steps:
    """Stands in for venv and pip: records each step, makes the venv's folder, can fail one step."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.argvs: list[list[str]] = []
        self.fail_at = fail_at

    def __call__(self, argv: Sequence[str]) -> None:
        self.argvs.append(list(argv))
        if self.fail_at is not None and self.fail_at in argv:
            raise ProvisionError(f"installing the embedded LocalStack failed ({self.fail_at}): boom")
        if argv[1:3] == ["-m", "venv"]:
            (Path(argv[3]) / "bin").mkdir(parents=True)
            (Path(argv[3]) / "bin" / "python").write_text("")


def test_the_first_run_installs_with_a_progress_line_and_the_next_reuses_it(tmp_path: Path) -> None:
    lines: list[str] = []
    steps = Steps()
    python = ensure(tmp_path, progress=lines.append, run=steps, lock=LOCK)
    venv = venv_dir(tmp_path, LOCK)
    assert python == venv / "bin" / "python"
    assert python.exists()
    assert (venv / READY_MARK).exists()
    assert (venv / "localstack.lock").read_text() == LOCK
    staging = venv.with_name(venv.name + ".partial")
    assert [argv[1:] for argv in steps.argvs] == [
        ["-m", "venv", str(staging)],
        ["-m", "pip", "--disable-pip-version-check", "--quiet", "install", "--upgrade", "pip"],
        ["-m", "pip", "--disable-pip-version-check", "--quiet", "install", "-r", str(staging / "localstack.lock")],
    ]
    assert lines[0].startswith(f"installing the embedded LocalStack into {venv} (first run only")
    assert lines[-1].startswith("embedded LocalStack installed in ")

    again: list[str] = []
    assert ensure(tmp_path, progress=again.append, run=Steps(fail_at="venv"), lock=LOCK) == python
    assert again == []  # nothing installed, nothing said


def test_a_failed_install_leaves_nothing_a_later_run_would_take_for_ready(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="failed"):
        ensure(tmp_path, progress=lambda _: None, run=Steps(fail_at="-r"), lock=LOCK)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".install.lock"]
    python = ensure(tmp_path, progress=lambda _: None, run=Steps(), lock=LOCK)
    assert python.exists()


def test_an_unfinished_folder_is_made_again(tmp_path: Path) -> None:
    venv = venv_dir(tmp_path, LOCK)
    (venv / "bin").mkdir(parents=True)  # an install stopped before its end (no ready mark)
    (venv / "junk").write_text("half")
    ensure(tmp_path, progress=lambda _: None, run=Steps(), lock=LOCK)
    assert not (venv / "junk").exists()
    assert (venv / READY_MARK).exists()


def test_another_lock_gets_its_own_environment(tmp_path: Path) -> None:
    assert venv_dir(tmp_path, LOCK) != venv_dir(tmp_path, LOCK + "cbor2==5.6.5\n")


def test_a_home_that_cannot_be_written_is_one_readable_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(ProvisionError, match=r"cannot install the embedded LocalStack under .*set CONVEYOR_HOME"):
        ensure(blocked / "home", progress=lambda _: None, run=Steps(), lock=LOCK)


def test_the_lock_ships_with_the_package_and_pins_localstack() -> None:
    assert "localstack-core==" in lock_text()


def test_home_follows_conveyor_home_then_the_xdg_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "mine"))
    assert localstack_install.default_home() == tmp_path / "mine"
    monkeypatch.delenv("CONVEYOR_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert localstack_install.default_home() == tmp_path / "cache" / "conveyor"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert localstack_install.default_home() == Path.home() / ".cache" / "conveyor"
