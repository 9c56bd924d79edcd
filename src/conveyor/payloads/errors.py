"""What can go wrong with a stored payload, classified once.

The processor's handler never sees these: a payload that cannot be fetched is the message's outcome
before any handler runs. Gone for good (the object or its bucket no longer exists, or the message is
marked but points nowhere): :class:`PayloadMissingError` and :class:`PayloadUnreadableError`, both
permanent, so the message is dead-lettered at once with that error type (retrying cannot bring an
object back). Anything else S3 says (throttling, a 5xx, access denied, a timeout) is a
:class:`PayloadStoreError`: the message is retried with backoff, like a handler's failure.
"""

from __future__ import annotations

from aiohttp import ClientError as HttpClientError
from botocore.exceptions import BotoCoreError, ClientError

from conveyor.errors import ConveyorError
from conveyor.message import PermanentError

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
S3_ERRORS: tuple[type[BaseException], ...] = (ClientError, BotoCoreError, OSError, TimeoutError, HttpClientError)
"""What an S3 call raises when S3 (or the way to it) fails (aiohttp's own errors too: a body cut short
while it is read is a ``ClientPayloadError``, which aiobotocore does not wrap); anything else is a bug of ours."""


class PayloadMissingError(PermanentError):
    """The message's payload is not in S3 (its object or bucket is gone): it can never be handled."""


class PayloadUnreadableError(PermanentError):
    """The message is marked as offloaded but its body is not a pointer, or its payload is not text."""


class PayloadStoreError(ConveyorError):
    """An S3 call failed for a reason that may heal (or that the operator must mend): ``code`` names it."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"S3 {operation} failed: {code}")
        self.operation = operation
        self.code = code
        self.message = message  # S3's own text: for the log only, it may name the account or the bucket


def error_code(exc: BaseException) -> str:
    """The S3 error code of a failed call (or the exception's name for connection trouble)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def is_missing(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) in MISSING_CODES
