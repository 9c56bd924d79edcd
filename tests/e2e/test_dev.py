"""`conveyor dev` (what `make run` runs): LocalStack, the queues, both services; SIGTERM leaves
nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import boto3
import httpx

from conveyor.localstack import free_port
from tests.localstack_fixtures import BIN, LOCALSTACK_PYTHON, boto_client, wait_for


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_conveyor_dev_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("LOCALSTACK", "WRITER", "PROCESSOR")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env |= {f"CONVEYOR_{name}_PORT": str(port) for name, port in ports.items()}
    env |= {"CONVEYOR_STATE_DIR": str(tmp_path / "state"), "CONVEYOR_LOCALSTACK_PYTHON": str(LOCALSTACK_PYTHON)}
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen([str(BIN / "conveyor"), "dev"], env=env, stdout=out, stderr=out)
    try:
        writer = f"http://127.0.0.1:{ports['WRITER']}"
        wait_for(lambda: _ok(writer + "/readyz") and _ok(f"http://127.0.0.1:{ports['PROCESSOR']}/readyz"), 90, "up")
        sqs = boto_client(f"http://127.0.0.1:{ports['LOCALSTACK']}")
        urls = {u.rsplit("/", 1)[1]: u for u in sqs.list_queues()["QueueUrls"]}
        assert sorted(urls) == ["conveyor-messages", "conveyor-messages-canary", "conveyor-messages-dlq"]
        policy = sqs.get_queue_attributes(QueueUrl=urls["conveyor-messages"],
                                          AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]  # fmt: skip
        assert json.loads(policy)["deadLetterTargetArn"].endswith(":conveyor-messages-dlq")
        assert httpx.post(writer + "/messages", json={"body": {"hello": "dev"}}).status_code == 202
        wait_for(lambda: "demo_handled" in log.read_text(), 30, "the demo handler ran")
        assert '"body": "{\\"hello\\":\\"dev\\"}"' in log.read_text()  # the body as JSON, not a repr
        # past SQS's 1 MiB: through the bucket `conveyor dev` made in LocalStack's S3, deleted once handled
        large = {"blob": "x" * 1_500_000}
        assert httpx.post(writer + "/messages", json={"body": large}, timeout=30).status_code == 202
        wait_for(lambda: '"bytes": 1500011' in log.read_text(), 30, "the demo handler got the large payload")
        assert '"payload_location": "s3://conveyor-payloads/' in log.read_text()
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{ports['LOCALSTACK']}", region_name="us-east-1")
        wait_for(lambda: s3.list_objects_v2(Bucket="conveyor-payloads").get("KeyCount") == 0, 10, "object deleted")
        assert "conveyor dev: payload bucket conveyor-payloads (S3)" in log.read_text()
        # the canary command `conveyor dev` prints works as printed (the secret it made up reached the processor)
        [hint] = [line for line in log.read_text().splitlines() if line.startswith("conveyor dev: try the canary: ")]
        words = hint.removeprefix("conveyor dev: try the canary: ").split()
        variables = dict(word.split("=", 1) for word in words if word.startswith("CONVEYOR_"))
        assert words[len(variables)].endswith("conveyor")
        probe = subprocess.run([str(BIN / "conveyor"), *words[len(variables) + 1 :]], env=env | variables,
                               capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.startswith("conveyor canary: ok: handled by ")
        _the_console_as_printed(log.read_text(), env)
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(60) == 0
    finally:
        _stopped(dev)
    # nothing left: no LocalStack, no writer, no processor
    assert not any(listening(port) for port in ports.values())
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False)
    assert leftovers.stdout == ""
    text = log.read_text()
    assert "conveyor dev: queue-writer on" in text


def _the_console_as_printed(text: str, env: dict[str, str]) -> None:
    """The console command `conveyor dev` prints works as printed: it sees the queue and the processor."""
    [hint] = [line for line in text.splitlines() if line.startswith("conveyor dev: the web console: ")]
    words = hint.removeprefix("conveyor dev: the web console: ").split("  (")[0].split()
    variables = dict(word.split("=", 1) for word in words if word.startswith("CONVEYOR_"))
    assert words[len(variables) :][1:] == ["console"]
    port = free_port()
    environment = env | variables | {"CONVEYOR_CONSOLE_PORT": str(port)}
    console = subprocess.Popen([str(BIN / "conveyor"), "console"], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _ok(f"http://127.0.0.1:{port}/readyz"), 30, "the console")
        seen = httpx.get(f"http://127.0.0.1:{port}/api/overview", timeout=10).json()
        assert seen["queues"][0]["name"] == "conveyor-messages"
        assert seen["processors"]["handled"] >= 2  # the two messages above, from the processor's metrics
    finally:
        console.send_signal(signal.SIGTERM)
        assert console.wait(30) == 0


def _stopped(dev: subprocess.Popen[bytes]) -> None:
    """After a failed step: stop it as a user would (SIGTERM), so that it stops its children, LocalStack
    included; killed only if that does not end it."""
    if dev.poll() is None:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(60)
        except subprocess.TimeoutExpired:
            dev.kill()
            dev.wait()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


ORDERS = """
import logging
from conveyor import Message

VERSION = "{version}"


async def handle(message: Message) -> None:
    print(f"orders handled {{VERSION}} {{message.json()['order']}}", flush=True)
"""


def test_your_handler_from_the_folder_you_are_in_with_options_and_reload(tmp_path: Path) -> None:
    """A user's folder with only its module: `conveyor dev --handler orders:handle` imports it from
    there (no PYTHONPATH), the ports are options, the banner comes once the writer answers, and
    --reload restarts the processor on a change of the module."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "orders.py").write_text(ORDERS.format(version="v1"))
    ports = {name: free_port() for name in ("localstack", "writer", "processor")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") and k != "PYTHONPATH"}
    env |= {"CONVEYOR_STATE_DIR": str(tmp_path / "state"), "CONVEYOR_LOCALSTACK_PYTHON": str(LOCALSTACK_PYTHON)}
    argv = [str(BIN / "conveyor"), "dev", "--handler", "orders:handle", "--reload"]
    argv += [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=project)
    writer = f"http://127.0.0.1:{ports['writer']}"
    try:
        wait_for(lambda: "conveyor dev: queue-writer on" in log.read_text(), 90, "the banner")
        # printed once the writer listens: the first request right after it is accepted
        assert httpx.post(writer + "/messages", json={"body": {"order": 1}}).status_code == 202
        wait_for(lambda: "orders handled v1 1" in log.read_text(), 30, "the user's handler ran")
        (project / "orders.py").write_text(ORDERS.format(version="v2"))
        wait_for(lambda: "orders.py changed; restarting the processor" in log.read_text(), 30, "the reload")
        wait_for(lambda: log.read_text().count('"processor_started"') == 2, 60, "the new processor")
        assert httpx.post(writer + "/messages", json={"body": {"order": 2}}).status_code == 202
        wait_for(lambda: "orders handled v2 2" in log.read_text(), 30, "the changed handler ran")
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(60) == 0
    finally:
        _stopped(dev)
    assert not any(listening(port) for port in ports.values())
