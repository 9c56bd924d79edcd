"""`conveyor dev` (what `make run` runs): LocalStack, the queues, both services; SIGTERM leaves
nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

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
        # the canary command `conveyor dev` prints works as printed (the secret it made up reached the processor)
        [hint] = [line for line in log.read_text().splitlines() if line.startswith("conveyor dev: try the canary: ")]
        words = hint.removeprefix("conveyor dev: try the canary: ").split()
        variables = dict(word.split("=", 1) for word in words if word.startswith("CONVEYOR_"))
        assert words[len(variables)].endswith("conveyor")
        probe = subprocess.run([str(BIN / "conveyor"), *words[len(variables) + 1 :]], env=env | variables,
                               capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.startswith("conveyor canary: ok: handled by ")
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(60) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
    # nothing left: no LocalStack, no writer, no processor
    assert not any(listening(port) for port in ports.values())
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False)
    assert leftovers.stdout == ""
    text = log.read_text()
    assert "conveyor dev: queue-writer on" in text


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
