"""`conveyor status` and `conveyor dlq ...` as the real console script against LocalStack: what the
test put on the queues is what the commands show, move, export and purge."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import metadata
from conveyor.localstack import LocalStack, free_port
from tests.localstack_fixtures import BIN, Queues, count, drain, make_queues, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def conveyor(queues: Queues, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "conveyor"), *args], env=queues.env(**env), capture_output=True, text=True, timeout=120, check=False
    )


def seed(sqs: SQSClient, queues: Queues, error_type: str, n: int = 1, *, age_ms: int = 0) -> list[str]:
    """Put ``n`` messages on the DLQ as the processor dead-letters them (body, a user attribute and
    the conveyor.dead_letter record); returns their bodies."""
    bodies = []
    for _ in range(n):
        body = json.dumps({"key": uuid.uuid4().hex[:8], "type": error_type})
        record = {
            "error_type": error_type, "error_message": f"boom {error_type}", "original_message_id": str(uuid.uuid4()),
            "receive_count": 1, "retries_exhausted": False, "source_queue": queues.url,
            "dead_lettered_at": int(time.time() * 1000) - age_ms,
        }  # fmt: skip
        sqs.send_message(
            QueueUrl=queues.dlq_url,
            MessageBody=body,
            MessageAttributes={
                "tenant": {"DataType": "String", "StringValue": "acme"},
                metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record)},
            },
        )
        bodies.append(body)
    return bodies


def redriven_by_sqs(sqs: SQSClient, endpoint: str) -> Queues:
    """Queues (maxReceiveCount 1) whose DLQ holds one message SQS's own redrive moved (no record)."""
    queues = make_queues(endpoint, max_receive_count=1)
    sqs.send_message(QueueUrl=queues.url, MessageBody='{"by": "sqs"}')
    sqs.receive_message(QueueUrl=queues.url, VisibilityTimeout=0, WaitTimeSeconds=1)
    wait_for(lambda: not sqs.receive_message(QueueUrl=queues.url, WaitTimeSeconds=1).get("Messages")
             and count(sqs, queues.dlq_url) == (1, 0), 15, "SQS moved it to the DLQ")  # fmt: skip
    return queues


def test_status_figures_match_the_queues(queues: Queues, sqs: SQSClient) -> None:
    # GIVEN 3 visible and 2 in flight and 1 delayed on the queue, 2 on the DLQ, none on the canary queue
    for n in range(6):
        sqs.send_message(QueueUrl=queues.url, MessageBody=f'{{"n": {n}}}', DelaySeconds=600 if n == 5 else 0)
    taken = sqs.receive_message(QueueUrl=queues.url, MaxNumberOfMessages=2, VisibilityTimeout=600, WaitTimeSeconds=1)
    assert len(taken["Messages"]) == 2
    seed(sqs, queues, "builtins.ValueError", 2)
    # WHEN
    result = conveyor(queues, "status", "--json")
    human = conveyor(queues, "status")
    # THEN
    assert result.returncode == 0, result.stderr
    rows = {row["role"]: row for row in json.loads(result.stdout)["queues"]}
    figures = {role: (r["visible"], r["in_flight"], r["delayed"]) for role, r in rows.items()}
    assert figures == {"queue": (3, 2, 1), "dlq": (2, 0, 0), "canary": (0, 0, 0)}
    assert rows["queue"]["redrive_policy"]["maxReceiveCount"] == 5
    assert rows["dlq"]["name"] == f"{queues.name}-dlq"
    assert rows["canary"]["retention_seconds"] == 600
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[1].split()[:6] == ["queue", queues.name, "3", "2", "1", "n/a"]
    assert lines[1].endswith(f"to {queues.name}-dlq after 5 receives")
    assert lines[2].split()[:6] == ["dlq", f"{queues.name}-dlq", "2", "0", "0", "n/a"]


def test_status_of_a_missing_queue_is_one_line(queues: Queues) -> None:
    result = conveyor(queues, "status", CONVEYOR_QUEUE_NAME="no-such-queue")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("conveyor status: queue no-such-queue: AWS.SimpleQueueService.NonExistentQueue ("), line


def test_status_of_an_unreachable_sqs_is_one_line(queues: Queues) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = conveyor(queues, "status", CONVEYOR_SQS_ENDPOINT_URL=dead, CONVEYOR_SQS_MAX_ATTEMPTS="1")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"conveyor status: queue {queues.name}: EndpointConnectionError ("), line


def test_peek_shows_the_records_and_leaves_the_count_unchanged(localstack: LocalStack, sqs: SQSClient) -> None:
    queues = redriven_by_sqs(sqs, localstack.endpoint)
    seed(sqs, queues, "builtins.ValueError", 2)
    seed(sqs, queues, "tests.handlers.BadAmountError", 1)
    assert count(sqs, queues.dlq_url) == (4, 0)
    human = conveyor(queues, "dlq", "peek")
    as_json = conveyor(queues, "dlq", "peek", "--json", "--limit", "3")
    assert human.returncode == as_json.returncode == 0, human.stderr + as_json.stderr
    # the count is unchanged and every message is visible again at once
    assert count(sqs, queues.dlq_url) == (4, 0)
    assert human.stdout.count("builtins.ValueError: boom builtins.ValueError") == 2
    assert "tests.handlers.BadAmountError: boom" in human.stdout
    assert "(no conveyor.dead_letter record: moved by SQS's redrive policy)" in human.stdout
    assert (
        human.stdout.splitlines()[-1] == f"conveyor dlq peek: 4 shown of about 4 in {queues.name}-dlq; they stay there"
    )
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert line["dead_letter"] is None or line["dead_letter"]["source_queue"] == queues.url


def test_redrive_by_error_type_moves_exactly_the_matching_messages(queues: Queues, sqs: SQSClient) -> None:
    # GIVEN 3 ValueErrors, 2 BadAmountErrors and 1 KeyError on the DLQ
    values = seed(sqs, queues, "builtins.ValueError", 3)
    seed(sqs, queues, "tests.handlers.BadAmountError", 2)
    seed(sqs, queues, "builtins.KeyError", 1)
    # WHEN a dry run asks for the ValueErrors: nothing moves
    dry = conveyor(queues, "dlq", "redrive", "--error-type", "ValueError", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sum(line.startswith("would move ") for line in dry.stdout.splitlines()) == 3
    assert (
        dry.stdout.splitlines()[-1] == "conveyor dlq redrive: dry run: would move 3, skip 3, fail 0; nothing was moved"
    )
    assert (count(sqs, queues.url), count(sqs, queues.dlq_url)) == ((0, 0), (6, 0))
    # WHEN the ValueErrors are redriven by class name
    moved = conveyor(queues, "dlq", "redrive", "--error-type", "ValueError")
    # THEN exactly those 3 are on the queue, and the 3 others still on the DLQ
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines()[-1].startswith("conveyor dlq redrive: moved 3, skipped 3, failed 0 (client-side")
    assert (count(sqs, queues.url), count(sqs, queues.dlq_url)) == ((3, 0), (3, 0))
    back = drain(sqs, queues.url, 3)
    assert sorted(m["Body"] for m in back) == sorted(values)  # bodies unchanged
    for message in back:
        attributes = message["MessageAttributes"]
        assert attributes["tenant"] == {"DataType": "String", "StringValue": "acme"}  # user attributes unchanged
        assert metadata.DEAD_LETTER not in attributes
        [history] = json.loads(attributes[metadata.REDRIVE_HISTORY]["StringValue"])
        assert history["error_type"] == "builtins.ValueError"
        assert history["redriven_at"] >= history["dead_lettered_at"]
    # AND the qualified name works, with a limit
    one = conveyor(queues, "dlq", "redrive", "--error-type", "tests.handlers.BadAmountError", "--limit", "1")
    assert one.returncode == 0, one.stderr
    assert (count(sqs, queues.url), count(sqs, queues.dlq_url)) == ((1, 0), (2, 0))


def test_redrive_older_than(queues: Queues, sqs: SQSClient) -> None:
    seed(sqs, queues, "builtins.ValueError", 2, age_ms=3_600_000)
    seed(sqs, queues, "builtins.ValueError", 1)
    result = conveyor(queues, "dlq", "redrive", "--older-than", "600")
    assert result.returncode == 0, result.stderr
    assert (count(sqs, queues.url), count(sqs, queues.dlq_url)) == ((2, 0), (1, 0))


def test_redrive_of_everything_uses_the_move_task(localstack: LocalStack, sqs: SQSClient) -> None:
    queues = redriven_by_sqs(sqs, localstack.endpoint)
    seed(sqs, queues, "builtins.ValueError", 2)
    result = conveyor(queues, "dlq", "redrive")
    assert result.returncode == 0, result.stderr
    assert "move task COMPLETED: 3 of 3 moved" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(
        "conveyor dlq redrive: moved 3, skipped 0, failed 0 (SQS move task"
    )
    assert (count(sqs, queues.url)[0], count(sqs, queues.dlq_url)) == (3, (0, 0))


def test_a_redrive_ends_while_the_processor_rejects_what_it_moves(
    queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    # GIVEN a processor whose handler fails every message permanently, and the three it dead-lettered
    env = queues.env(CONVEYOR_HANDLER="tests.handlers:fail_by_type", CONVEYOR_PROCESSOR_PORT=str(free_port()),
                     CONVEYOR_WAIT_TIME_SECONDS="1")  # fmt: skip
    with (tmp_path / "processor.log").open("wb") as log:
        processor = subprocess.Popen([str(BIN / "queue-processor")], env=env, stdout=log, stderr=log)
    try:
        for n in range(3):
            sqs.send_message(QueueUrl=queues.url, MessageBody=json.dumps({"fail": "BadAmountError", "n": n}))
        wait_for(lambda: count(sqs, queues.dlq_url) == (3, 0), 30, "the processor dead-lettered the three")
        # WHEN they are redriven while it runs: each comes back to the DLQ as a new message
        try:
            result = subprocess.run(
                [str(BIN / "conveyor"), "dlq", "redrive", "--error-type", "BadAmountError"],
                env=queues.env(), capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the redrive did not end: {str(exc.stdout)[-500:]}") from exc
        # THEN it moved each of the three once and ended; what came back stays on the DLQ
        assert result.returncode == 0, result.stderr
        assert sum(line.startswith("moved ") for line in result.stdout.splitlines()) == 3, result.stdout
        assert "conveyor dlq redrive: moved 3, skipped 0, failed 0 (client-side move" in result.stdout
        wait_for(lambda: count(sqs, queues.url) == (0, 0) and count(sqs, queues.dlq_url) == (3, 0), 30,
                 "the processor dead-lettered the redriven copies")  # fmt: skip
    finally:
        processor.terminate()
        processor.wait(30)
    back = drain(sqs, queues.dlq_url, 3)
    assert len(back) == 3
    for message in back:  # each was redriven once
        assert len(json.loads(message["MessageAttributes"][metadata.REDRIVE_HISTORY]["StringValue"])) == 1


def test_redrive_of_everything_puts_back_the_attributes_kept_in_a_record(
    localstack: LocalStack, sqs: SQSClient
) -> None:
    # GIVEN beside a message SQS moved, one that had ten attributes: its tenth is inside its record
    queues = redriven_by_sqs(sqs, localstack.endpoint)
    user: dict[str, Any] = {f"a{n}": {"DataType": "String", "StringValue": f"v{n}"} for n in range(9)}
    tenth = {"a9": {"DataType": "String", "StringValue": "v9"}}
    record = {"error_type": "conveyor.message.Reject", "error_message": "no", "source_queue": queues.url,
              "dead_lettered_at": int(time.time() * 1000), "overflow_attributes": tenth}  # fmt: skip
    sqs.send_message(QueueUrl=queues.dlq_url, MessageBody="ten", MessageAttributes={
        **user, metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record)}})  # fmt: skip
    # WHEN everything is redriven
    result = conveyor(queues, "dlq", "redrive")
    # THEN both are back, that one with its ten attributes and without the record
    assert result.returncode == 0, result.stderr
    back = {m["Body"]: m.get("MessageAttributes", {}) for m in drain(sqs, queues.url, 2)}
    assert set(back) == {"ten", '{"by": "sqs"}'}
    history = back["ten"].pop(metadata.REDRIVE_HISTORY, None)
    assert back["ten"] == user | tenth, history
    assert count(sqs, queues.dlq_url) == (0, 0)
    assert "conveyor dlq redrive: moved 2, skipped 0, failed 0 (client-side move" in result.stdout, result.stdout


def test_export_then_purge(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    bodies = seed(sqs, queues, "builtins.ValueError", 2)
    sqs.send_message(
        QueueUrl=queues.dlq_url,
        MessageBody="raw",
        MessageAttributes={"blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}},
    )
    target = tmp_path / "dlq.jsonl"
    result = conveyor(queues, "dlq", "export", str(target))
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout
        == f"conveyor dlq export: 3 message(s) from {queues.name}-dlq written to {target}; they stay there\n"
    )
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(e["body"] for e in exported) == sorted([*bodies, "raw"])
    raw: dict[str, Any] = next(e for e in exported if e["body"] == "raw")
    assert raw["attributes"]["blob"] == {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\x00\xff").decode()}
    assert raw["dead_letter"] is None
    assert {"SentTimestamp", "ApproximateReceiveCount"} <= set(raw["system_attributes"])
    assert sum(1 for e in exported if e["dead_letter"] and e["dead_letter"]["error_type"] == "builtins.ValueError") == 2
    assert count(sqs, queues.dlq_url) == (3, 0)
    # an existing file is never overwritten
    again = conveyor(queues, "dlq", "export", str(target))
    assert again.returncode == 1
    assert (
        again.stderr
        == f"conveyor dlq export: {target} exists; export writes a new file (remove it or choose another name)\n"
    )
    # purge refuses without --yes, then empties the DLQ
    refused = conveyor(queues, "dlq", "purge")
    assert (refused.returncode, refused.stderr.count("\n")) == (2, 1)
    assert count(sqs, queues.dlq_url) == (3, 0)
    purged = conveyor(queues, "dlq", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith(f"conveyor dlq purge: purged {queues.name}-dlq (about 3 message(s)")
    wait_for(lambda: count(sqs, queues.dlq_url) == (0, 0), 60, "the DLQ purged")


def test_a_queue_without_a_dlq_and_bad_flags_are_one_line(queues: Queues, sqs: SQSClient) -> None:
    plain = f"plain-{uuid.uuid4().hex[:8]}"
    sqs.create_queue(QueueName=plain)
    no_dlq = conveyor(queues, "dlq", "peek", CONVEYOR_QUEUE_NAME=plain)
    assert no_dlq.returncode == 1
    assert no_dlq.stderr == (f"conveyor dlq peek: queue {plain} has no dead-letter queue (no RedrivePolicy; "
                             "`conveyor queues create` sets one)\n")  # fmt: skip
    missing = conveyor(queues, "dlq", "redrive", CONVEYOR_QUEUE_NAME="no-such-queue")
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        "conveyor dlq redrive: queue no-such-queue: AWS.SimpleQueueService.NonExistentQueue"
    )
    for args in (["dlq", "redrive", "--limit", "0"], ["dlq", "peek", "--limit", "x"], ["dlq"], ["status", "--nope"]):
        result = conveyor(queues, *args)
        assert result.returncode == 2, args
        assert result.stderr.count("\n") == 1, (args, result.stderr)
        assert result.stderr.endswith("(see --help)\n"), result.stderr
    assert count(sqs, queues.url) == (0, 0)


def test_queues_create_makes_the_canary_queue(localstack: LocalStack, sqs: SQSClient) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    queues = Queues(name, "", "", localstack.endpoint)
    first, second = conveyor(queues, "queues", "create"), conveyor(queues, "queues", "create")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.splitlines()[2].endswith(f"/{name}-canary")
    assert first.stdout == second.stdout
    url = sqs.get_queue_url(QueueName=f"{name}-canary")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod", "RedrivePolicy"])
    assert attrs["Attributes"] == {"MessageRetentionPeriod": "600"}


def test_a_processor_with_the_secret_needs_the_canary_queue(queues: Queues, sqs: SQSClient) -> None:
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=f"{queues.name}-canary")["QueueUrl"])
    secret = "integration-secret-0123"  # noqa: S105 - the test's own secret
    env = queues.env(CONVEYOR_CANARY_SECRET=secret, CONVEYOR_PROCESSOR_PORT=str(free_port()))
    result = subprocess.run([str(BIN / "queue-processor")], env=env, capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"queue-processor: AWS.SimpleQueueService.NonExistentQueue: canary queue {queues.name}-canary:"
    ), line
    assert "integration-secret" not in result.stderr
