"""Conveyor: put messages onto Amazon SQS over HTTP and process them reliably.

The public handler API: an :class:`App` maps each message type to its handler, whose first
parameter's annotation is the type's model (validated at the writer and again before the handler
runs); a plain handler receives a :class:`Message` (or, marked with :func:`batch_handler`, a list of
them). Returning means success, raising
:class:`Retry` asks for another delivery later, raising :class:`Reject` (or any
:class:`PermanentError`) dead-letters the message at once, raising :class:`Throttle` says the downstream
is saturated (retried later, and the processor slows down), and any other exception is retried with
backoff until the queue's redrive policy gives up.
"""

from typing import TYPE_CHECKING, Any

from conveyor.message import (
    BatchFailures,
    InvalidJsonError,
    Message,
    PermanentError,
    Reject,
    Retry,
    Throttle,
    batch_handler,
    idempotent,
)

__all__ = [
    "App",
    "BatchFailures",
    "InvalidJsonError",
    "InvalidMessageError",
    "Message",
    "PermanentError",
    "Reject",
    "Retry",
    "Throttle",
    "UnknownMessageTypeError",
    "batch_handler",
    "get_logger",
    "idempotent",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from conveyor.contracts import App, InvalidMessageError, UnknownMessageTypeError
    from conveyor.logs import get_logger

# Imported when first asked for: `import conveyor` stays standard-library only (the LocalStack
# installer runs from src/ on a bare Python, before any dependency is installed).
_LAZY = {
    "App": "conveyor.contracts",
    "InvalidMessageError": "conveyor.contracts",
    "UnknownMessageTypeError": "conveyor.contracts",
    "get_logger": "conveyor.logs",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415 - only when a lazy name is asked for

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
