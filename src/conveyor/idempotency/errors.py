"""The store's two errors: a bad URL (at start-up) and a store that cannot answer (at run time)."""

from __future__ import annotations


class StoreUrlError(ValueError):
    """``CONVEYOR_IDEMPOTENCY_STORE`` is not a URL this package can open. The message is one readable
    line and never repeats the URL itself (it may carry a password)."""


class StoreUnavailableError(Exception):
    """The store could not answer: Redis down or timing out, SQLite locked past its busy timeout, disk
    full. The one type the services classify: the writer answers 503, the processor retries later.
    The original error is chained (``__cause__``)."""
