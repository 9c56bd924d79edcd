"""The writer's one start-up path: the queue is read once, by the app. SQS unreachable:
the writer starts unready (503 with Retry-After, /readyz 503) and keeps trying; the queue unusable:
start-up fails with one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import structlog
from botocore.exceptions import EndpointConnectionError

from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, client_error
from conveyor.writer import startup
from conveyor.writer.server import GRACEFUL_SHUTDOWN_SECONDS
from conveyor.writer.startup import QueueUnusableError
from tests.unit.conftest import QUEUE, running_writer

MISSING = "AWS.SimpleQueueService.NonExistentQueue"


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "FIRST_RETRY_SECONDS", 0.02)


async def ready(api: httpx.AsyncClient, timeout: float = 10.0) -> httpx.Response:  # noqa: ASYNC109 - a deadline
    """Poll /readyz until it is 200, with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (response := await api.get("/readyz")).status_code != 200:
        assert asyncio.get_running_loop().time() < deadline, response.text
        await asyncio.sleep(0.02)
    return response


def unreachable() -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url="http://127.0.0.1:9")


async def test_sqs_unreachable_at_start_means_unready_and_503_until_it_answers(
    fake: InMemorySqs, writer_settings: WriterSettings
) -> None:
    # GIVEN SQS cannot be reached when the writer starts (nor for the first retries)
    fake.fail_calls["GetQueueUrl"].extend(unreachable() for _ in range(3))
    with structlog.testing.capture_logs() as logs:
        async with running_writer(fake, writer_settings) as api:
            # WHEN messages arrive meanwhile THEN they are answered 503 with Retry-After, and not ready
            single = await api.post("/messages", json={"body": 1})
            batch = await api.post("/messages/batch", json={"messages": [{"id": "a", "body": 1}]})
            readyz = await api.get("/readyz")
            # WHEN SQS answers THEN the writer becomes ready and takes messages
            await ready(api)
            after = await api.post("/messages", json={"body": 2})
    for answer in (single, batch, readyz):
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "EndpointConnectionError"
    assert single.headers["retry-after"] == "2"
    assert batch.headers["retry-after"] == "2"
    assert after.status_code == 202
    assert [m.body for m in fake.queues[QUEUE].messages.values()] == ["2"]
    assert any(e["event"] == "queue_unreachable" for e in logs)
    assert any(e["event"] == "writer_ready" for e in logs)


async def test_a_queue_that_does_not_exist_fails_start_up_with_one_line(
    fake: InMemorySqs, writer_settings: WriterSettings
) -> None:
    fake.fail_calls["GetQueueUrl"].append(client_error(MISSING, "GetQueueUrl", message="The queue does not exist."))
    with pytest.raises(QueueUnusableError) as raised:
        async with running_writer(fake, writer_settings):
            pass
    assert str(raised.value) == f"{MISSING}: The queue does not exist."
    assert fake.count("GetQueueUrl") == 1


async def test_a_queue_found_unusable_after_start_keeps_the_writer_unready(
    fake: InMemorySqs, writer_settings: WriterSettings
) -> None:
    # GIVEN SQS is unreachable at start, then says the queue does not exist
    fake.fail_calls["GetQueueUrl"].extend([unreachable(), client_error(MISSING, "GetQueueUrl")])
    with structlog.testing.capture_logs() as logs:
        async with running_writer(fake, writer_settings) as api:
            deadline = asyncio.get_running_loop().time() + 10
            while not any(e["event"] == "queue_unusable" for e in logs):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            posted = await api.post("/messages", json={"body": 1})
            readyz = await api.get("/readyz")
    # THEN messages are 500 with the code (the operator must act), readiness 503; no more reads
    assert (posted.status_code, posted.json()["code"]) == (500, MISSING)
    assert (readyz.status_code, readyz.json()["code"]) == (503, MISSING)
    assert fake.count("GetQueueUrl") == 2


def test_the_writer_drains_well_inside_a_30_s_stop_timeout() -> None:
    # Kubernetes and ECS stop a container 30 s after SIGTERM by default; the processor's grace is 20 s.
    how_it_works = (Path(__file__).parents[2] / "docs" / "how-it-works.md").read_text()
    assert GRACEFUL_SHUTDOWN_SECONDS == 20
    assert f"answered within {GRACEFUL_SHUTDOWN_SECONDS} s" in how_it_works
