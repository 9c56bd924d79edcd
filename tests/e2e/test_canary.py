"""`conveyor canary` against the real writer and processor (console scripts) and LocalStack: a canary
is answered without reaching the handler; without a processor, or with another secret, or with a
processor that has no secret, the probe fails naming the step, and the body is an ordinary message."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from conveyor.localstack import LocalStack, free_port
from tests.e2e.services import Record, post_messages, start_processor, stopped_at_the_end, writer
from tests.localstack_fixtures import BIN, Queues, count, make_queues, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SECRET = "e2e-canary-secret-0123456789"  # noqa: S105 - the test's own secret


def canary(queues: Queues, *args: str, secret: str = SECRET, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = queues.env(CONVEYOR_CANARY_SECRET=secret)
    return subprocess.run(
        [str(BIN / "conveyor"), "canary", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_canary_is_handled_and_the_handler_never_sees_it(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    # GIVEN a writer and a processor that share the canary secret, with a recording handler
    record = Record(tmp_path / "record.sqlite")
    processor = start_processor(
        queues, tmp_path, record.path, CONVEYOR_CANARY_SECRET=SECRET, CONVEYOR_PROCESSOR_ID="proc-e2e-1"
    )
    with writer(queues, tmp_path) as api:
        # WHEN the canary probes once, and an ordinary message follows it
        result = canary(queues, "--once", "--url", api.url)
        posted = post_messages(api.url, 1)
        record.wait_for_keys(posted.accepted, 30)
        answered = metric(processor.url, 'conveyor_processor_canaries_total{result="answered"}')
        succeeded = metric(processor.url, "conveyor_processor_succeeded_total")
    assert processor.stop() == 0
    # THEN the probe passed, naming the processor, and the handler saw only the ordinary message
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("conveyor canary: ok: handled by proc-e2e-1 "), result.stdout
    assert result.stderr == ""
    assert [json.loads(body) for _, body, _, _ in record.rows()] == [{"key": next(iter(posted.accepted))}]
    # AND the canary counts apart from the handler's successes; nothing is left on either queue
    assert (answered, succeeded) == (1.0, 1.0)
    assert count(sqs, queues.url) == (0, 0)
    canary_queue = sqs.get_queue_url(QueueName=f"{queues.name}-canary")["QueueUrl"]
    assert count(sqs, canary_queue) == (0, 0)


def test_json_output_of_one_probe(queues: Queues, tmp_path: Path) -> None:
    start_processor(queues, tmp_path, tmp_path / "record.sqlite", CONVEYOR_CANARY_SECRET=SECRET)
    with writer(queues, tmp_path) as api:
        result = canary(queues, "--once", "--json", "--url", api.url)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["ok"] is True
    assert probe["request_id"] == f"canary-{probe['canary_id']}"
    assert probe["post_seconds"] > 0
    assert probe["e2e_seconds"] > 0
    assert probe["received_at_ms"] <= probe["handled_at_ms"]


def test_no_processor_fails_naming_the_step_within_the_timeout(queues: Queues, tmp_path: Path) -> None:
    with writer(queues, tmp_path) as api:
        started = time.monotonic()
        result = canary(queues, "--once", "--timeout", "3", "--url", api.url)
        took = time.monotonic() - started
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("conveyor canary: not handled within 3 s (message "), line
    assert result.stdout == ""
    assert took < 3 + 10  # the timeout, plus the start of a Python process on a busy machine


def test_a_forged_canary_is_an_ordinary_message_for_the_handler(queues: Queues, tmp_path: Path) -> None:
    # GIVEN a processor with the secret, and a canary signing with another one
    record = Record(tmp_path / "record.sqlite")
    processor = start_processor(queues, tmp_path, record.path, CONVEYOR_CANARY_SECRET=SECRET)
    with writer(queues, tmp_path) as api:
        result = canary(queues, "--once", "--timeout", "5", "--url", api.url, secret="not-the-processors-secret")  # noqa: S106 - a forger's secret
        # THEN the probe fails, and the body reached the user's handler like any message
        wait_for(lambda: len(record.rows()) == 1, 30, "the forged canary handled as an ordinary message")
        answered = metric(processor.url, 'conveyor_processor_canaries_total{result="answered"}')
    assert result.returncode == 1
    assert "not handled within 5 s" in result.stderr
    [(_, body, _, _)] = record.rows()
    assert set(json.loads(body)) == {"conveyor_canary"}
    assert answered == 0.0


def test_a_processor_without_the_secret_hands_a_real_canary_to_the_handler(queues: Queues, tmp_path: Path) -> None:
    record = Record(tmp_path / "record.sqlite")
    start_processor(queues, tmp_path, record.path)  # no CONVEYOR_CANARY_SECRET
    with writer(queues, tmp_path) as api:
        result = canary(queues, "--once", "--timeout", "5", "--url", api.url)
        wait_for(lambda: len(record.rows()) == 1, 30, "the canary handled as an ordinary message")
    assert result.returncode == 1
    [(_, body, _, _)] = record.rows()
    assert json.loads(body)["conveyor_canary"]["v"] == 1


def test_post_refused_and_unreachable_are_one_line(queues: Queues, tmp_path: Path) -> None:
    unreachable = canary(queues, "--once", "--timeout", "5", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1
    [line] = unreachable.stderr.splitlines()
    assert line.startswith("conveyor canary: POST failed: cannot connect to http://127.0.0.1:"), line
    with writer(queues, tmp_path) as api:
        refused = canary(queues, "--once", "--timeout", "5", "--url", api.url + "/nowhere")
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith("conveyor canary: POST refused: 404 "), line
    assert "(request id canary-" in line


def test_the_secret_and_the_canary_queue_are_checked_first(queues: Queues) -> None:
    no_secret = canary(queues, "--once", secret="")
    assert no_secret.returncode == 2
    assert no_secret.stderr.splitlines() == ["conveyor canary: invalid setting CONVEYOR_CANARY_SECRET: "
                                             "Value error, must be at least 16 characters"]  # fmt: skip
    env = queues.env(CONVEYOR_QUEUE_NAME="no-such-queue")
    env.pop("CONVEYOR_CANARY_SECRET", None)
    unset = subprocess.run([str(BIN / "conveyor"), "canary", "--once"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)  # fmt: skip
    assert (unset.returncode, unset.stderr) == (2, "conveyor canary: CONVEYOR_CANARY_SECRET is not set "
                                                   "(the processors' secret)\n")  # fmt: skip
    env["CONVEYOR_CANARY_SECRET"] = SECRET
    missing = subprocess.run([str(BIN / "conveyor"), "canary", "--once"], env=env, capture_output=True, text=True,
                             timeout=60, check=False)  # fmt: skip
    assert missing.returncode == 1
    [line] = missing.stderr.splitlines()
    assert line.startswith(
        "conveyor canary: AWS.SimpleQueueService.NonExistentQueue: canary queue no-such-queue-canary"
    )


def test_continuous_mode_probes_and_serves_metrics(queues: Queues, tmp_path: Path) -> None:
    start_processor(queues, tmp_path, tmp_path / "record.sqlite", CONVEYOR_CANARY_SECRET=SECRET)
    port = free_port()
    with writer(queues, tmp_path) as api:
        env = queues.env(CONVEYOR_CANARY_SECRET=SECRET)
        args = ["canary", "--url", api.url, "--interval", "0.5", "--json", "--metrics-port", str(port)]
        out, err = tmp_path / "canary.out", tmp_path / "canary.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen([str(BIN / "conveyor"), *args], env=env, stdout=stdout, stderr=stderr)
        try:
            wait_for(lambda: _scrape(port, "conveyor_canary_success_total") >= 3, 60, "three probes passed")
            assert _scrape(port, 'conveyor_canary_failure_total{step="handled"}') == 0
            assert _scrape(port, "conveyor_canary_end_to_end_seconds_count") >= 3
            assert _scrape(port, "conveyor_canary_up") == 1
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert err.read_text() == ""
    probes = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(probes) >= 3
    assert all(probe["ok"] for probe in probes)
    assert len({probe["canary_id"] for probe in probes}) == len(probes)


def _scrape(port: int, name: str) -> float:
    try:
        return metric(f"http://127.0.0.1:{port}", name)
    except httpx.TransportError:
        return -1.0


def test_a_canary_passes_on_a_fifo_queue(localstack: LocalStack, tmp_path: Path) -> None:
    # GIVEN a FIFO pair without content-based deduplication (the canary brings its own ids)
    queues = make_queues(localstack.endpoint, fifo=True)
    record = Record(tmp_path / "record.sqlite")
    processor = start_processor(queues, tmp_path, record.path, CONVEYOR_CANARY_SECRET=SECRET)
    with stopped_at_the_end(processor), writer(queues, tmp_path) as api:
        result = canary(queues, "--once", "--url", api.url)
    assert result.returncode == 0, result.stderr
    assert record.rows() == []  # the handler never saw it
