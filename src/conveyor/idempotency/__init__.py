"""The idempotency store shared by the writer (``Idempotency-Key`` replay) and the processor (a
handler completes once per key). Open it from ``CONVEYOR_IDEMPOTENCY_STORE``::

    async with open_store("sqlite:///.conveyor/idempotency.sqlite3") as store:
        claims = await store.claim(keys, owner, lease_seconds=30)

or ``store = open_store(url)`` ... ``await store.aclose()``. See docs/idempotency.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from conveyor.idempotency.errors import StoreUnavailableError, StoreUrlError
from conveyor.idempotency.store import Abandon, Claim, IdempotencyStore, RequestClaim, RequestState, StoredResponse
from conveyor.idempotency.url import SqliteLocation, parse_store_url

__all__ = [
    "Abandon",
    "Claim",
    "IdempotencyStore",
    "RequestClaim",
    "RequestState",
    "StoreUnavailableError",
    "StoreUrlError",
    "StoredResponse",
    "open_store",
    "parse_store_url",
]


def open_store(url: str, *, clock: Callable[[], float] = time.time) -> IdempotencyStore:
    """The store a URL names (:class:`StoreUrlError` if it names none). Nothing is connected yet:
    the first call opens the file or the connection, so a store that is down surfaces as
    :class:`StoreUnavailableError` from the calls, never here. ``clock`` (SQLite only) gives
    wall-clock seconds, for tests."""
    location = parse_store_url(url)
    if isinstance(location, SqliteLocation):
        from conveyor.idempotency.sqlite_store import SqliteStore  # noqa: PLC0415 - each backend loads its own driver

        return SqliteStore(location.path, clock=clock)
    from conveyor.idempotency.redis_store import RedisStore, redis_client  # noqa: PLC0415 - each backend loads its own driver

    return RedisStore(redis_client(location.url))
