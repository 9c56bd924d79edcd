"""The embedded LocalStack's own virtual environment, provisioned on first use.

LocalStack's pins conflict with aiobotocore's botocore pin, so it cannot live in Conveyor's own
environment. ``conveyor dev`` asks :func:`ensure` for its interpreter: the first time, a virtual
environment is made under ``CONVEYOR_HOME`` (default ``~/.cache/conveyor``) from the lock file that
ships with the package (``conveyor/localstack.lock``), with a progress line; afterwards it is
reused. A pip user needs no Makefile and no clone; `make install` builds the repository's
``.venv-localstack`` with the same code (``python -m conveyor.localstack_install --venv DIR``).

The environment is named after the lock's hash, so an upgrade of Conveyor that changes the lock gets
a new one. It is built in a temporary folder and renamed into place when complete: an interrupted
install (Ctrl-C, a full disk) leaves nothing a later run would take for ready, and a file lock keeps
two ``conveyor dev`` started at once from building it twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path

from conveyor.errors import ConveyorError

READY_MARK = ".conveyor-ready"  # written last: a folder without it was never finished


class ProvisionError(ConveyorError):
    """The embedded LocalStack could not be installed; the message says why and what to do."""


type Runner = Callable[[Sequence[str]], None]


def lock_text() -> str:
    """The pinned requirements of the embedded LocalStack, as shipped with this package."""
    return resources.files("conveyor").joinpath("localstack.lock").read_text(encoding="utf-8")


def default_home() -> Path:
    """``CONVEYOR_HOME``, else ``$XDG_CACHE_HOME/conveyor``, else ``~/.cache/conveyor``."""
    if home := os.environ.get("CONVEYOR_HOME"):
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "conveyor"


def venv_dir(home: Path, lock: str) -> Path:
    digest = hashlib.sha256(lock.encode()).hexdigest()[:12]
    return home / f"localstack-{digest}"


def interpreter(venv: Path) -> Path:
    return venv / "bin" / "python"


def run_quietly(argv: Sequence[str]) -> None:
    """Run one install step; on failure, its last output lines go into the error."""
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        step = argv[2] if len(argv) > 2 else argv[0]  # venv, pip
        raise ProvisionError(f"installing the embedded LocalStack failed ({step}): {tail}")


def build(venv: Path, lock: str, run: Runner = run_quietly, python: str = sys.executable) -> None:
    """Make ``venv`` and install the lock into it (``venv`` must not exist)."""
    run([python, "-m", "venv", str(venv)])
    requirements = venv / "localstack.lock"
    requirements.write_text(lock, encoding="utf-8")
    pip = [str(interpreter(venv)), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run([*pip, "install", "--upgrade", "pip"])
    run([*pip, "install", "-r", str(requirements)])


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".install.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another `conveyor dev` installing: wait for it
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(
    home: Path | None = None,
    *,
    progress: Callable[[str], None] = print,
    run: Runner = run_quietly,
    lock: str | None = None,
) -> Path:
    """The embedded LocalStack's interpreter, installed under ``home`` first if it is not there yet."""
    home = default_home() if home is None else home
    lock = lock_text() if lock is None else lock
    venv = venv_dir(home, lock)
    if (venv / READY_MARK).exists():
        return interpreter(venv)
    try:
        with _locked(home):
            if not (venv / READY_MARK).exists():  # not installed meanwhile by another process
                _install(venv, lock, progress, run)
    except OSError as exc:
        raise ProvisionError(f"cannot install the embedded LocalStack under {home}: {exc} (set CONVEYOR_HOME)") from exc
    return interpreter(venv)


def _install(venv: Path, lock: str, progress: Callable[[str], None], run: Runner) -> None:
    progress(f"installing the embedded LocalStack into {venv} (first run only, a few minutes)...")
    began = time.monotonic()
    staging = venv.with_name(f"{venv.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted install left
    shutil.rmtree(venv, ignore_errors=True)  # a folder never finished (no ready mark)
    try:
        build(staging, lock, run)
        (staging / READY_MARK).write_text(f"{time.time():.0f}\n", encoding="utf-8")
        staging.rename(venv)  # complete, or not there at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"embedded LocalStack installed in {time.monotonic() - began:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m conveyor.localstack_install --venv DIR``: the repository's ``.venv-localstack``."""
    parser = argparse.ArgumentParser(description="Install the embedded LocalStack into a virtual environment.")
    parser.add_argument("--venv", type=Path, required=True, help="the folder to make (replaced if unfinished)")
    args = parser.parse_args(argv)
    venv: Path = args.venv.absolute()
    if (venv / READY_MARK).exists():
        return 0
    try:
        _install(venv, lock_text(), lambda line: print(f"conveyor: {line}", flush=True), run_quietly)
    except ProvisionError as exc:
        print(f"conveyor: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
