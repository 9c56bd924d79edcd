"""Every SQS failure is classified in one place."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from conveyor.sqs.errors import Kind, cause_of, classify
from conveyor.testing.sqs import client_error


def kind_of_code(code: str, *, sender_fault: bool | None = None) -> Kind:
    """How an SQS error code is classified (``sender_fault`` as given by batch ``Failed`` entries)."""
    return cause_of(code, sender_fault=sender_fault).kind


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
    # An unknown code is server-side even when SQS calls it the sender's fault: a code SQS adds
    # tomorrow must not refuse good messages as the client's fault.
    assert kind_of_code("SomethingOdd", sender_fault=True) is Kind.RETRYABLE
    assert kind_of_code("InvalidMessageContents", sender_fault=True) is Kind.SENDER


# Only a known content code is the sender's fault; credential, KMS and unknown codes are server-side
# (500 fatal / 503 retryable), whatever the HTTP status or SenderFault flag says.
@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("ExpiredToken", Kind.RETRYABLE),  # refreshed credentials heal it
        ("ExpiredTokenException", Kind.RETRYABLE),
        ("RequestExpired", Kind.RETRYABLE),  # a signature that aged in transit or a skewed clock
        ("RequestTimeTooSkewed", Kind.RETRYABLE),
        ("KMS.KeyUnavailableException", Kind.RETRYABLE),
        ("KmsThrottled", Kind.RETRYABLE),
        ("KMS.InvalidStateException", Kind.FATAL),
        ("KmsInvalidState", Kind.FATAL),
        ("KMS.InvalidKeyUsageException", Kind.FATAL),
        ("KMS.OptInRequired", Kind.FATAL),
        ("KMS.NotFoundException", Kind.FATAL),
        ("KMS.DisabledException", Kind.FATAL),
        ("KMS.AccessDeniedException", Kind.FATAL),
        ("InvalidClientTokenId", Kind.FATAL),
        ("QueueDoesNotExist", Kind.FATAL),
        ("SomethingSqsInventsTomorrow", Kind.RETRYABLE),
    ],
)
def test_credential_kms_and_unknown_codes_are_server_side(code: str, kind: Kind) -> None:
    assert classify(client_error(code, "SendMessageBatch", 400)).kind is kind
    for sender_fault in (True, None):
        assert kind_of_code(code, sender_fault=sender_fault) is kind


@pytest.mark.parametrize(
    "code", ["InvalidMessageContents", "InvalidParameterValue", "MissingParameter", "ReceiptHandleIsInvalid"]
)
def test_known_content_codes_are_the_senders_fault(code: str) -> None:
    assert kind_of_code(code, sender_fault=True) is Kind.SENDER
    assert classify(client_error(code, "SendMessageBatch", 400)).kind is Kind.SENDER


def test_a_failure_carries_a_summary_safe_to_show() -> None:
    arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    failure = classify(client_error("KMS.DisabledException", "SendMessageBatch", 400, message=f"{arn} is disabled"))
    assert arn in failure.message  # kept for the log
    assert "arn:" not in failure.summary
    assert "123456789012" not in failure.summary
    assert failure.summary


def test_whole_call_failures_that_may_lie_in_one_entry_are_split() -> None:
    for code in ("InvalidParameterValue", "InvalidMessageContents", "BatchRequestTooLong",
                 "AWS.SimpleQueueService.BatchRequestTooLong", "TooManyEntriesInBatchRequest",
                 "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "SomethingSqsInventsTomorrow"):  # fmt: skip
        assert classify(client_error(code, "SendMessageBatch", 400)).split, code
    for code in ("ThrottlingException", "AccessDenied", "KMS.DisabledException", "ExpiredToken"):
        assert not classify(client_error(code, "SendMessageBatch", 400)).split, code
    assert not classify(client_error("SomethingSqsInventsTomorrow", "SendMessageBatch", 500)).split
