"""Conveyor: put messages onto Amazon SQS over HTTP and process them reliably.

The public handler API: a handler receives a :class:`Message` (or, marked with :func:`batch_handler`,
a list of them); returning means success, raising
:class:`Retry` asks for another delivery later, raising :class:`Reject` (or any
:class:`PermanentError`) dead-letters the message at once, and any other exception is retried with
backoff until the queue's redrive policy gives up.
"""

from conveyor.message import (
    BatchFailures,
    InvalidJsonError,
    Message,
    PermanentError,
    Reject,
    Retry,
    batch_handler,
    idempotent,
)

__all__ = [
    "BatchFailures",
    "InvalidJsonError",
    "Message",
    "PermanentError",
    "Reject",
    "Retry",
    "batch_handler",
    "idempotent",
]
__version__ = "0.1.0"
