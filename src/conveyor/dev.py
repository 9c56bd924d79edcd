"""`conveyor dev`: LocalStack + queues + writer + processor on this machine, stopped as one."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from conveyor.localstack import LocalStack, answers_ok
from conveyor.localstack_install import ensure as ensure_localstack
from conveyor.payloads.bucket import ensure_bucket
from conveyor.payloads.client import s3_client
from conveyor.settings import DevSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.queues import canary_queue_url, create_queues

CHILD_STOP_SECONDS = 40.0
LISTEN_TIMEOUT_SECONDS = 60.0
DEV_PAYLOAD_BUCKET = "conveyor-payloads"  # the local S3 bucket, unless CONVEYOR_PAYLOAD_BUCKET names one


def _script(name: str) -> str:
    """A console script of this installation (next to the running interpreter)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"console script {name} not found; is conveyor installed?")
    return path


async def _create(settings: DevSettings) -> tuple[str, str, str]:
    async with sqs_client(settings) as client, s3_client(settings) as s3:
        fifo = settings.queue_name.endswith(".fifo")  # content-based deduplication: curl needs no ids
        url, dlq_url = await create_queues(
            client, settings.queue_name, settings.max_receive_count, content_based_dedup=fifo
        )
        await ensure_bucket(s3, _payload_bucket(settings))
        return url, dlq_url, await canary_queue_url(client, settings)


def _payload_bucket(settings: DevSettings) -> str:
    """The one given, else the embedded default's: messages past SQS's limit go through the local S3."""
    return settings.payload_bucket or DEV_PAYLOAD_BUCKET


def _idempotency_store(settings: DevSettings) -> str:
    """The one given, else the embedded default: a SQLite file in the state directory."""
    return os.environ.get("CONVEYOR_IDEMPOTENCY_STORE") or f"sqlite:///{settings.state_dir}/idempotency.sqlite3"


def _canary_secret(settings: DevSettings) -> str:
    """The children's CONVEYOR_CANARY_SECRET: the one given, else a fresh one for this run."""
    return settings.canary_secret.get_secret_value() if settings.canary_secret else secrets.token_hex(16)


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(CHILD_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _supervise(
    children: list[subprocess.Popen[bytes]], stop: threading.Event, restart: threading.Event, env: dict[str, str]
) -> int:
    """Wait for a stop signal or for a child to exit; returns the exit code for `conveyor dev`. A
    restart (``--reload``) replaces the processor, the writer runs on."""
    while not stop.wait(0.2):
        if restart.is_set():
            restart.clear()
            _stop_children(children[1:])
            children[1] = _start("queue-processor", env)
        for child in children:
            if child.poll() is not None:
                name = Path(str(child.args[0])).name  # type: ignore[index]  # args is a list here
                print(f"conveyor dev: {name} exited with code {child.returncode}; stopping")
                return 1
    return 0


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _start_localstack(settings: DevSettings) -> LocalStack:
    stack = LocalStack.start(
        localstack_python(settings),
        settings.state_dir / "localstack",
        port=settings.localstack_port,
        gateway_server=settings.localstack_gateway_server,
    )
    print(f"conveyor dev: LocalStack SQS at {stack.endpoint} (log: {stack.log_path})")
    return stack


def _create_queues(settings: DevSettings, endpoint: str) -> None:
    url, dlq_url, canary_url = asyncio.run(_create(settings.model_copy(update={"sqs_endpoint_url": endpoint})))
    print(f"conveyor dev: queue {url}\nconveyor dev: dead-letter queue {dlq_url}")
    print(f"conveyor dev: canary queue {canary_url}\nconveyor dev: payload bucket {_payload_bucket(settings)} (S3)")


def _start_services(env: dict[str, str], children: list[subprocess.Popen[bytes]]) -> None:
    """Start the writer and the processor, each added to ``children`` as soon as it runs (so that a
    failure to start the second still stops the first)."""
    for script in ("queue-writer", "queue-processor"):
        children.append(_start(script, env))


def _start(script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A process group of its own: Ctrl-C in the terminal reaches `conveyor dev` only, which then
    # sends each child one SIGTERM (two signals would make the processor stop at once).
    return subprocess.Popen([_script(script)], env=env, stdin=subprocess.DEVNULL, process_group=0)


def _wait_listening(settings: DevSettings, children: list[subprocess.Popen[bytes]]) -> None:
    """Until the writer and the processor answer /healthz, so that the banner is printed when a
    request can be sent (a child that exits meanwhile is reported by _supervise)."""
    urls = [
        f"http://{settings.writer_host}:{settings.writer_port}/healthz",
        f"http://127.0.0.1:{settings.processor_port}/healthz",
    ]
    deadline = time.monotonic() + LISTEN_TIMEOUT_SECONDS
    while urls and time.monotonic() < deadline and all(child.poll() is None for child in children):
        if answers_ok(urls[0]):
            urls.pop(0)
        else:
            time.sleep(0.1)


def _reload_environment(env: dict[str, str]) -> dict[str, str]:
    """What the children get with ``--reload`` (the user's own settings win)."""
    return {
        # No .pyc files: a change within the second of the last one, of the same size, would look
        # unchanged to Python's cache (it compares whole seconds and sizes).
        "PYTHONDONTWRITEBYTECODE": "1",
        # A processor stopped mid long poll leaves the poll open at SQS for up to its wait time, and
        # a message arriving then goes to it and stays invisible for a visibility timeout: short
        # polls make a restart cost a second, not half a minute (and cost nothing on a local SQS).
        "CONVEYOR_WAIT_TIME_SECONDS": env.get("CONVEYOR_WAIT_TIME_SECONDS", "1"),
    }


def _watch_code(folder: Path, stop: threading.Event, restart: threading.Event) -> None:
    """``--reload``: a thread that asks for a restart of the processor when a .py file changes."""
    import watchfiles  # noqa: PLC0415 - only --reload needs it (uvicorn[standard] brings it)

    def watch() -> None:
        for changes in watchfiles.watch(folder, watch_filter=watchfiles.PythonFilter(), stop_event=stop):
            names = sorted({Path(path).name for _, path in changes})
            print(f"conveyor dev: {', '.join(names)} changed; restarting the processor", flush=True)
            restart.set()

    threading.Thread(target=watch, name="conveyor-dev-reload", daemon=True).start()


def _show_how_to_use(settings: DevSettings, endpoint: str, secret: str) -> None:
    print(
        f"conveyor dev: queue-writer on http://{settings.writer_host}:{settings.writer_port}"
        f" (POST /messages), queue-processor ops on http://127.0.0.1:{settings.processor_port}"
        "\nconveyor dev: Ctrl-C stops everything"
    )
    shown = "$CONVEYOR_CANARY_SECRET" if settings.canary_secret else secret  # never echo the user's own
    print(
        f"conveyor dev: try the canary: CONVEYOR_SQS_ENDPOINT_URL={endpoint}"
        f" CONVEYOR_QUEUE_NAME={settings.queue_name} CONVEYOR_CANARY_SECRET={shown}"
        f" {_conveyor_command()} canary --once --url http://{settings.writer_host}:{settings.writer_port}",
        flush=True,
    )
    print(
        f"conveyor dev: the web console: CONVEYOR_SQS_ENDPOINT_URL={endpoint} CONVEYOR_QUEUE_NAME={settings.queue_name}"
        f" CONVEYOR_CONSOLE_METRICS_URLS=http://127.0.0.1:{settings.processor_port}/metrics"
        f" {_conveyor_command()} console  (http://127.0.0.1:8002, read-only without CONVEYOR_CONSOLE_TOKEN)",
        flush=True,
    )


def _conveyor_command() -> str:
    """This installation's `conveyor`, as a shell would write it: by name when that finds it."""
    script = _script("conveyor")
    return "conveyor" if shutil.which("conveyor") == script else script


def run_dev(settings: DevSettings, *, reload: bool = False) -> int:
    """Run the whole system until SIGINT/SIGTERM; leaves no child process behind."""
    stop = _stop_on_signals()
    stack: LocalStack | None = None
    children: list[subprocess.Popen[bytes]] = []
    try:
        endpoint = settings.endpoint
        if endpoint is None:
            stack = _start_localstack(settings)
            endpoint = stack.endpoint
        secret = _canary_secret(settings)
        env = {
            **os.environ,
            "CONVEYOR_SQS_ENDPOINT_URL": endpoint,
            "CONVEYOR_QUEUE_NAME": settings.queue_name,
            "CONVEYOR_CANARY_SECRET": secret,
            "CONVEYOR_IDEMPOTENCY_STORE": _idempotency_store(settings),
            "CONVEYOR_PAYLOAD_BUCKET": _payload_bucket(settings),
        }
        if reload:
            env |= _reload_environment(env)
        _create_queues(settings, endpoint)
        _start_services(env, children)
        _wait_listening(settings, children)
        _show_how_to_use(settings, endpoint, secret)
        restart = threading.Event()
        if reload:
            _watch_code(Path.cwd(), stop, restart)
        return _supervise(children, stop, restart, env)
    finally:
        _stop_children(children)
        if stack is not None:
            stack.stop()


def localstack_python(settings: DevSettings) -> Path:
    """CONVEYOR_LOCALSTACK_PYTHON, else the embedded LocalStack under CONVEYOR_HOME (installed now
    if this is the first run)."""
    if settings.localstack_python is not None:
        return settings.localstack_python
    return ensure_localstack(settings.home, progress=lambda line: print(f"conveyor dev: {line}", flush=True))
