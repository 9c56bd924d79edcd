"""Every SQS failure is classified in one place."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from conveyor.sqs.errors import Kind, classify, kind_of_code
from tests.fakes import client_error


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 400, Kind.RETRYABLE),
        ("RequestThrottled", 400, Kind.RETRYABLE),
        ("KMS.ThrottlingException", 400, Kind.RETRYABLE),
        ("InternalError", 500, Kind.RETRYABLE),
        ("Whatever", 503, Kind.RETRYABLE),
        ("AWS.SimpleQueueService.NonExistentQueue", 400, Kind.FATAL),
        ("AccessDenied", 403, Kind.FATAL),
        ("InvalidClientTokenId", 403, Kind.FATAL),
        ("InvalidMessageContents", 400, Kind.SENDER),
    ],
)
def test_client_errors(code: str, status: int, kind: Kind) -> None:
    failure = classify(client_error(code, "SendMessage", status))
    assert failure.kind is kind
    assert failure.code == code


def test_connection_trouble_is_retryable() -> None:
    assert classify(EndpointConnectionError(endpoint_url="http://x")).retryable
    assert classify(ReadTimeoutError(endpoint_url="http://x")).retryable


def test_missing_credentials_are_fatal() -> None:
    assert classify(NoCredentialsError()).kind is Kind.FATAL


def test_batch_entries_follow_sender_fault() -> None:
    assert kind_of_code("SomethingOdd", sender_fault=False) is Kind.RETRYABLE
    assert kind_of_code("SomethingOdd", sender_fault=True) is Kind.SENDER
