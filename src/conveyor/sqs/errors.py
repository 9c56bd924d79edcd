"""Every SQS failure is classified here, once: retryable, fatal (cannot heal) or the sender's fault."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

THROTTLING = frozenset(
    {
        "RequestThrottled",
        "ThrottlingException",
        "Throttling",
        "KMS.ThrottlingException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
SERVER = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException"})
FATAL = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NonExistentQueue",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSecurity",
        "MissingAuthenticationToken",
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
        "KMS.NotFoundException",
        "NoCredentials",
    }
)


SQS_ERRORS: tuple[type[BaseException], ...] = (ClientError, BotoCoreError, OSError, TimeoutError)
"""What an SQS call raises when SQS (or the way to it) fails; anything else is a bug of ours."""


class Kind(enum.Enum):
    """What the caller should do about a failure."""

    RETRYABLE = "retryable"  # throttling, 5xx, connection trouble: try again later
    FATAL = "fatal"  # queue missing, access denied, bad credentials: will not heal by retrying
    SENDER = "sender"  # this request or entry is wrong: do not retry it


@dataclass(frozen=True, slots=True)
class SqsFailure:
    """A classified SQS failure: ``code`` is the SQS error code (or the exception's name)."""

    code: str
    message: str
    kind: Kind

    @property
    def retryable(self) -> bool:
        return self.kind is Kind.RETRYABLE


def kind_of_code(code: str, *, sender_fault: bool | None = None, status: int = 400) -> Kind:
    """Classify an SQS error code (``sender_fault`` as given by batch ``Failed`` entries)."""
    if code in FATAL:
        return Kind.FATAL
    if code in THROTTLING or code in SERVER or status >= 500:
        return Kind.RETRYABLE
    if sender_fault is False:
        return Kind.RETRYABLE
    return Kind.SENDER


def classify(exc: BaseException) -> SqsFailure:
    """Classify an exception raised by an SQS call (after botocore's own retries)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        return SqsFailure(code, str(error.get("Message", exc)), kind_of_code(code, status=status))
    if isinstance(exc, NoCredentialsError):
        return SqsFailure("NoCredentials", str(exc), Kind.FATAL)
    # Connection trouble, timeouts, and anything unforeseen: worth another try later.
    return SqsFailure(type(exc).__name__, str(exc), Kind.RETRYABLE)


class SqsError(Exception):
    """An SQS call or batch entry failed; carries the classification."""

    def __init__(self, failure: SqsFailure) -> None:
        super().__init__(f"{failure.code}: {failure.message}")
        self.failure = failure

    @classmethod
    def cancelled(cls) -> SqsError:
        """The call never answered because this process stopped it."""
        return cls(SqsFailure("Cancelled", "the call was cancelled before SQS answered", Kind.RETRYABLE))

    @classmethod
    def unexpected(cls, exc: BaseException) -> SqsError:
        return cls(classify(exc))


RECEIPT_GONE = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidReceiptHandle",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
    }
)


def receipt_gone(failure: SqsFailure) -> bool:
    """The message is no longer held with this receipt handle (deleted, or visible again and perhaps
    received elsewhere): extending or deleting it again cannot succeed. SQS says so with one of the
    codes above, or for a visibility change with InvalidParameterValue "Message does not exist or is
    not available for visibility timeout change"."""
    if failure.code in RECEIPT_GONE:
        return True
    return failure.code.startswith("InvalidParameterValue") and "not available" in failure.message
