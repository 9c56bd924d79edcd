"""The embedded local SQS: LocalStack run on the host as a child process, SQS only.

Start on a given or free port, wait until ready with a deadline, stop the whole process group, keep
its log in a file. A LocalStack that fails to start raises :class:`LocalStackError` with one line
that points at its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from conveyor.errors import ConveyorError

READY_TIMEOUT_SECONDS = 60.0
# LocalStack's own shutdown waits for open long polls (up to 20 s). It keeps no state here that a
# kill could lose, so it gets a short grace, then SIGKILL.
STOP_TIMEOUT_SECONDS = 3.0
HEALTH_PATH = "/_localstack/health"


class LocalStackError(ConveyorError):
    """LocalStack could not be started; the message names its log file."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def localstack_env(port: int, state_dir: Path, gateway_server: str) -> dict[str, str]:
    """The environment that runs LocalStack on the host with SQS and S3 (for payloads) only, bound to loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "AWS_"))}
    env.update(
        OVERRIDE_IN_DOCKER="0",  # this machine has /.dockerenv; without it LocalStack writes to /etc
        SERVICES="sqs,s3",
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        LOCALSTACK_HOST=f"127.0.0.1:{port}",
        # twisted ignores the host above and listens on 0.0.0.0; hypercorn keeps to loopback
        GATEWAY_SERVER=gateway_server,
        SQS_ENDPOINT_STRATEGY="path",
        DISABLE_EVENTS="1",
        SKIP_SSL_CERT_DOWNLOAD="1",
        DNS_ADDRESS="0",
        FILESYSTEM_ROOT=str(state_dir / "filesystem"),
    )
    return env


def answers_ok(url: str) -> bool:
    """True when a local http ``url`` answers 200 within a second (a health or readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own http URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class LocalStack:
    """A running LocalStack child process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        python: Path,
        state_dir: Path,
        port: int | None = None,
        gateway_server: str = "hypercorn",
        ready_timeout: float = READY_TIMEOUT_SECONDS,
    ) -> Self:
        """Start LocalStack and wait until its health endpoint answers (or raise)."""
        if not python.exists():
            raise LocalStackError(
                f"LocalStack is not installed: {python} missing (unset CONVEYOR_LOCALSTACK_PYTHON to let"
                " `conveyor dev` install it, or run `make install` in the repository)"
            )
        python = python.absolute()  # not resolve(): the venv interpreter is a symlink
        port = port or free_port()
        state_dir = state_dir.resolve()
        (state_dir / "filesystem").mkdir(parents=True, exist_ok=True)
        log_path = state_dir / "localstack.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(python), "-m", "localstack.runtime.main"],
                env=localstack_env(port, state_dir, gateway_server),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=state_dir,
                start_new_session=True,  # its own process group: stop() ends every child it spawns
            )
        stack = cls(process, port, log_path)
        try:
            stack.wait_ready(ready_timeout)
        except BaseException:
            stack.stop()
            raise
        return stack

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise LocalStackError(f"LocalStack exited with code {code}; see {self.log_path}")
            if self.is_healthy():
                return
            time.sleep(0.1)
        raise LocalStackError(f"LocalStack not ready after {timeout:.0f} s; see {self.log_path}")

    def is_healthy(self) -> bool:
        return answers_ok(self.endpoint + HEALTH_PATH)

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after a deadline."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGCONT)
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left in the group
        if self.process.poll() is None:
            self.process.wait(STOP_TIMEOUT_SECONDS)
