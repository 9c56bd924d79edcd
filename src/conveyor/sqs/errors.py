"""Every SQS failure is classified here, once: retryable, fatal (cannot heal) or the sender's fault.

The rule: only a code known to be about the content of one request or entry is the sender's fault.
Credential, KMS and queue codes are server-side (the operator's, never the HTTP client's), and so is
any code not listed here: a code SQS adds tomorrow must not refuse good messages as the client's
fault. Server-side codes that heal by themselves are retryable (503); the others are fatal (500).

SQS speaks two dialects of codes: the JSON protocol's shape names (``QueueDoesNotExist``,
``KmsDisabled``) and the query-compatible codes botocore reports when SQS sends them
(``AWS.SimpleQueueService.NonExistentQueue``, ``KMS.DisabledException``). Both are listed.

Each failure carries ``message`` (SQS's own text: for the log only, it may hold key ARNs and account
ids) and ``summary`` (a generic sentence per cause, safe to show to an HTTP client).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from conveyor.errors import ConveyorError


class Kind(enum.Enum):
    """What the caller should do about a failure."""

    RETRYABLE = "retryable"  # throttling, 5xx, connection trouble, expired credentials: try again later
    FATAL = "fatal"  # queue missing, access denied, KMS key unusable: will not heal by retrying
    SENDER = "sender"  # this request or entry is wrong: do not retry it


@dataclass(frozen=True, slots=True)
class Cause:
    kind: Kind
    summary: str  # generic: never SQS's text, which may name key ARNs and account ids


THROTTLED = Cause(Kind.RETRYABLE, "SQS is throttling requests")
SERVER_ERROR = Cause(Kind.RETRYABLE, "SQS failed with a server error")
UNREACHABLE = Cause(Kind.RETRYABLE, "SQS could not be reached or did not answer in time")
UNKNOWN = Cause(Kind.RETRYABLE, "SQS failed with an error this service does not know")
EXPIRED = Cause(Kind.RETRYABLE, "this service's AWS credentials or request signature expired")
KMS_UNAVAILABLE = Cause(Kind.RETRYABLE, "the queue's KMS key is throttled or temporarily unavailable")
BATCH_SHAPE = Cause(Kind.RETRYABLE, "SQS refused the batch call this service built")
QUEUE_MISSING = Cause(Kind.FATAL, "the queue does not exist or its URL is not valid")
ACCESS_DENIED = Cause(Kind.FATAL, "this service may not use the queue (access denied or credentials refused)")
KMS_UNUSABLE = Cause(
    Kind.FATAL, "the queue's KMS key cannot be used (disabled, missing, not permitted or misconfigured)"
)
UNSUPPORTED = Cause(Kind.FATAL, "SQS does not support this operation on the queue")
QUEUE_CONFLICT = Cause(Kind.FATAL, "a queue of this name exists with other attributes")

CAUSES: dict[str, Cause] = {}


def _codes(cause: Cause, *codes: str) -> None:
    CAUSES.update(dict.fromkeys(codes, cause))


_codes(THROTTLED, "RequestThrottled", "ThrottlingException", "Throttling", "RequestLimitExceeded", "SlowDown")
# OverLimit: too many messages in flight (ReceiveMessage); PurgeQueueInProgress / QueueDeletedRecently:
# wait 60 s. All heal with time.
_codes(THROTTLED, "OverLimit", "AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress")
_codes(THROTTLED, "AWS.SimpleQueueService.QueueDeletedRecently", "QueueDeletedRecently")
_codes(SERVER_ERROR, "InternalError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException")
# botocore refreshes role and SSO credentials before they expire; an expired token or a request that
# aged in transit is a race with that refresh (or a skewed clock botocore corrects on retry).
_codes(EXPIRED, "ExpiredToken", "ExpiredTokenException", "RequestExpired", "RequestTimeTooSkewed")
_codes(KMS_UNAVAILABLE, "KMS.ThrottlingException", "KmsThrottled", "KMS.KeyUnavailableException")
# Codes about the shape of a batch call, which this service builds: resending the entries alone cures
# them (see ``SqsFailure.split``). BatchRequestTooLong is not here: alone, an entry too long is its own.
_codes(
    BATCH_SHAPE,
    "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "TooManyEntriesInBatchRequest",
    "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "BatchEntryIdsNotDistinct",
    "AWS.SimpleQueueService.EmptyBatchRequest", "EmptyBatchRequest",
    "AWS.SimpleQueueService.InvalidBatchEntryId", "InvalidBatchEntryId",
)  # fmt: skip
_codes(
    QUEUE_MISSING,
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue", "InvalidAddress",
    "ResourceNotFoundException",
)  # fmt: skip
_codes(
    ACCESS_DENIED,
    "AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "UnrecognizedClientException",
    "SignatureDoesNotMatch", "IncompleteSignature", "InvalidSecurity", "MissingAuthenticationToken",
    "AuthFailure", "OptInRequired", "NoCredentials",
)  # fmt: skip
# KMS.InvalidStateException: the key is pending deletion, disabled, pending import or its custom key
# store is disconnected: each needs the operator, like a disabled or deleted key.
_codes(
    KMS_UNUSABLE,
    "KMS.AccessDeniedException", "KmsAccessDenied", "KMS.DisabledException", "KmsDisabled",
    "KMS.NotFoundException", "KmsNotFound", "KMS.InvalidStateException", "KmsInvalidState",
    "KMS.InvalidKeyUsageException", "KmsInvalidKeyUsage", "KMS.OptInRequired", "KmsOptInRequired",
)  # fmt: skip
_codes(UNSUPPORTED, "AWS.SimpleQueueService.UnsupportedOperation", "UnsupportedOperation")
_codes(QUEUE_CONFLICT, "QueueAlreadyExists", "QueueNameExists")

# The sender's fault: what SQS says about one message or entry (content, parameters, receipt handle).
_codes(Cause(Kind.SENDER, "SQS refused a character of the message"), "InvalidMessageContents")
# InvalidParameterValueException: LocalStack's spelling (for a message over the queue's limit, say).
_codes(
    Cause(Kind.SENDER, "SQS refused a parameter of the message"),
    "InvalidParameterValue", "InvalidParameterValueException", "InvalidParameterCombination",
)  # fmt: skip
_codes(Cause(Kind.SENDER, "a parameter SQS requires is missing"), "MissingParameter")
_codes(Cause(Kind.SENDER, "SQS refused an attribute name or value"), "InvalidAttributeName", "InvalidAttributeValue")
_codes(
    Cause(Kind.SENDER, "the message is longer than SQS takes"),
    "AWS.SimpleQueueService.BatchRequestTooLong", "BatchRequestTooLong",
)  # fmt: skip
_codes(
    Cause(Kind.SENDER, "the receipt handle is no longer valid"),
    "ReceiptHandleIsInvalid", "InvalidReceiptHandle", "InvalidIdFormat",
    "AWS.SimpleQueueService.MessageNotInflight", "MessageNotInflight",
)  # fmt: skip


SQS_ERRORS: tuple[type[BaseException], ...] = (ClientError, BotoCoreError, OSError, TimeoutError)
"""What an SQS call raises when SQS (or the way to it) fails; anything else is a bug of ours."""


@dataclass(frozen=True, slots=True)
class SqsFailure:
    """A classified SQS failure: ``code`` is the SQS error code (or the exception's name);
    ``message`` is SQS's text (log it, never show it to a client); ``summary`` is safe to show.
    ``split``: a whole batch call was refused for a reason that may lie in one entry or in the
    batch's make-up: send its entries again alone to learn each one's verdict."""

    code: str
    message: str
    kind: Kind
    summary: str = ""
    split: bool = False

    @property
    def retryable(self) -> bool:
        return self.kind is Kind.RETRYABLE


def cause_of(code: str, *, sender_fault: bool | None = None, status: int = 400) -> Cause:
    """The cause of an SQS error code (``sender_fault`` as given by batch ``Failed`` entries).

    An unknown code is server-side; so is a 5xx or ``SenderFault: false``, unless the code is fatal."""
    cause = CAUSES.get(code)
    if cause is not None and cause.kind is Kind.FATAL:
        return cause
    if status >= 500 or sender_fault is False:
        return cause if cause is not None and cause.kind is Kind.RETRYABLE else SERVER_ERROR
    return cause or UNKNOWN


def entry_failure(code: str, message: str, *, sender_fault: bool | None) -> SqsFailure:
    """A classified entry of a batch response's ``Failed`` list."""
    cause = cause_of(code, sender_fault=sender_fault)
    return SqsFailure(code, message, cause.kind, cause.summary)


def classify(exc: BaseException) -> SqsFailure:
    """Classify an exception raised by an SQS call (after botocore's own retries)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        # The query-compatible header says "Receiver" for SQS's own faults.
        receiver = str(error.get("Type", "")).lower() == "receiver"
        cause = cause_of(code, status=500 if receiver else status)
        split = cause.kind is Kind.SENDER or cause in (BATCH_SHAPE, UNKNOWN)
        return SqsFailure(code, str(error.get("Message", exc)), cause.kind, cause.summary, split=split)
    if isinstance(exc, NoCredentialsError):
        return SqsFailure("NoCredentials", str(exc), Kind.FATAL, ACCESS_DENIED.summary)
    # Connection trouble, timeouts, and anything unforeseen: worth another try later.
    return SqsFailure(type(exc).__name__, str(exc), Kind.RETRYABLE, UNREACHABLE.summary)


class SqsError(ConveyorError):
    """An SQS call or batch entry failed; carries the classification."""

    def __init__(self, failure: SqsFailure) -> None:
        super().__init__(f"{failure.code}: {failure.message}")
        self.failure = failure

    @classmethod
    def cancelled(cls) -> SqsError:
        """The call never answered because this process stopped it."""
        return cls(
            SqsFailure("Cancelled", "the call was cancelled before SQS answered", Kind.RETRYABLE, UNREACHABLE.summary)
        )

    @classmethod
    def unexpected(cls, exc: BaseException) -> SqsError:
        return cls(classify(exc))


@contextmanager
def classified() -> Iterator[None]:
    """Around SQS calls whose failure stops what is being done: any failure becomes an
    :class:`SqsError` carrying its classification (one readable line, exit 1)."""
    try:
        yield
    except SqsError:
        raise
    except SQS_ERRORS as exc:
        raise SqsError(classify(exc)) from exc


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
