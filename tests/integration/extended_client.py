"""The AWS Python extended client (PyPI ``amazon-sqs-extended-client``), run in a process of its
own: importing it replaces ``boto3.Session`` process-wide, which must not leak into the tests.

``python -m tests.integration.extended_client send <bucket> <queue url> <legacy 0|1>`` sends stdin as
one message (always through S3); ``receive <bucket> <queue url>`` prints the messages it receives
(its own view: bodies fetched from S3) as one JSON list. The endpoint comes from ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
import sys

from sqs_extended_client.client import SQSExtendedClientSession


def _client(bucket: str, *, legacy: bool = False) -> object:
    session = SQSExtendedClientSession(region_name="us-east-1")  # type: ignore[no-untyped-call]
    client = session.client("sqs")
    client.large_payload_support = bucket  # type: ignore[attr-defined]
    client.use_legacy_attribute = legacy  # type: ignore[attr-defined]
    client.always_through_s3 = True  # type: ignore[attr-defined]
    return client


def main(argv: list[str]) -> None:
    command, bucket, url, *rest = argv
    client: object = _client(bucket, legacy=rest == ["1"])
    if command == "send":
        client.send_message(QueueUrl=url, MessageBody=sys.stdin.read())  # type: ignore[attr-defined]
        return
    response = client.receive_message(  # type: ignore[attr-defined]
        QueueUrl=url, WaitTimeSeconds=5, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    messages = [
        {"Body": m["Body"], "MessageAttributes": m.get("MessageAttributes", {})} for m in response.get("Messages", [])
    ]
    print(json.dumps(messages))


if __name__ == "__main__":
    main(sys.argv[1:])
