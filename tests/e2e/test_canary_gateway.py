"""The canary through the gateway (nginx from deploy/nginx in front of the writer): the API key
header it checks, given by flag or by CONVEYOR_CANARY_API_KEY, and a refusal named in one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.services import start_processor
from tests.e2e.test_canary import SECRET, canary
from tests.e2e.test_gateway import KEY, Gateway, gateway
from tests.localstack_fixtures import BIN

__all__ = ["gateway"]


def test_the_canary_passes_the_gateway_with_its_api_key(gateway: Gateway, tmp_path: Path) -> None:
    queues = gateway.queues
    start_processor(queues, tmp_path, tmp_path / "record.sqlite", CONVEYOR_CANARY_SECRET=SECRET)
    by_flag = canary(queues, "--once", "--url", gateway.url, "--api-key", KEY)
    assert by_flag.returncode == 0, by_flag.stderr
    env = queues.env(CONVEYOR_CANARY_SECRET=SECRET, CONVEYOR_CANARY_API_KEY=KEY, CONVEYOR_CANARY_URL=gateway.url)
    by_env = subprocess.run([str(BIN / "conveyor"), "canary", "--once"], env=env, capture_output=True, text=True,
                            timeout=90, check=False)  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout.startswith("conveyor canary: ok: handled by ")
    # without the key, nginx refuses the POST: one line, naming the step and the request id
    refused = canary(queues, "--once", "--timeout", "5", "--url", gateway.url)
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith("conveyor canary: POST refused: 401 "), line
    assert "(request id canary-" in line
