"""What both services see of the store: the answers it gives and the protocol both stores implement.

Every method takes a batch (or one request key) and makes ONE round trip to the store: the processor
claims the keys of a received batch of ten at once, and records their completions at once; the
writer begins the keys of a batch request at once, and finishes (or abandons) them at once; and under
load, one round trip ends the requests that finished and begins those that start meanwhile.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self


class Claim(enum.Enum):
    """The answer to claiming one handler key."""

    CLAIMED = "claimed"  # ours now: run the handler
    COMPLETED = "completed"  # done before (within the TTL): skip the handler, delete the message
    IN_PROGRESS = "in_progress"  # another owner holds an unexpired claim: retry later


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The writer's remembered answer to a request with an ``Idempotency-Key``."""

    status: int
    body: bytes
    content_type: str


class RequestState(enum.Enum):
    """The answer to beginning a request with an ``Idempotency-Key``."""

    NEW = "new"  # no record: a marker is ours now; send, then finish_request (or abandon_request)
    IN_FLIGHT = "in_flight"  # the first request is still running: 409 with Retry-After
    REPLAY = "replay"  # completed with the same request: answer the stored response
    MISMATCH = "mismatch"  # completed with a different request: 422


@dataclass(frozen=True, slots=True)
class RequestClaim:
    state: RequestState
    response: StoredResponse | None = None  # for REPLAY
    retry_after: float | None = None  # for IN_FLIGHT: seconds until the in-flight marker expires
    # For NEW: the token of the marker written; abandon with it to drop only that one. An opaque
    # handle, not part of the answer: claims compare equal without it.
    token: str | None = field(default=None, compare=False)


# What a writer abandons: a key (its in-flight marker, whoever wrote it), or ``(key, token)``: only the
# marker with that token (the one this request wrote), never one another request wrote after its lease.
type Abandon = str | tuple[str, str]


class IdempotencyStore(Protocol):
    """One object per process, shared by all tasks. Methods raise
    :class:`~conveyor.idempotency.StoreUnavailableError` when the store cannot answer; an async
    context manager (``async with open_store(url) as store``) or ``await store.aclose()``."""

    async def claim(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[Claim]:
        """For each key, atomically, in key order: absent or expired -> taken (CLAIMED); completed ->
        COMPLETED; claimed by ``owner`` already -> CLAIMED (its lease renewed); by another live owner
        -> IN_PROGRESS."""
        ...

    async def extend(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[bool]:
        """Renew the lease of the keys still claimed by ``owner``; others are left alone (never
        created, never revived). For each key: True when renewed, False when ``owner`` no longer
        held it (its claim ended: absent, another owner's, or completed)."""
        ...

    async def complete(self, keys: Sequence[str], owner: str, ttl_seconds: float) -> list[bool]:
        """Mark the keys completed for ``ttl_seconds``, even if the claim expired meanwhile (the
        handler did complete), unless another owner holds a live claim of the key: that claim is
        left alone (its holder's run decides). For each key: True when marked, False when left to
        another owner."""
        ...

    async def release(self, keys: Sequence[str], owner: str) -> None:
        """The handler failed: drop the claims still held by ``owner``."""
        ...

    async def begin_request(self, key: str, fingerprint: str, lease_seconds: float) -> RequestClaim:
        """Absent -> an in-flight marker for ``lease_seconds`` (NEW); in flight -> IN_FLIGHT (whatever
        its fingerprint) with ``retry_after``; completed with this fingerprint -> REPLAY with the
        response; completed with another -> MISMATCH."""
        ...

    async def finish_request(self, key: str, fingerprint: str, response: StoredResponse, ttl_seconds: float) -> None:
        """Remember the response for ``ttl_seconds`` (replaces the in-flight marker)."""
        ...

    async def abandon_request(self, key: str, token: str | None = None) -> None:
        """The request failed: forget its in-flight marker (only the one with ``token`` when given; a
        completed record is kept)."""
        ...

    async def begin_requests(self, requests: Sequence[tuple[str, str]], lease_seconds: float) -> list[RequestClaim]:
        """:meth:`begin_request` for each ``(key, fingerprint)``, in order, atomically: the entries of
        one batch request. A key given twice is NEW, then IN_FLIGHT."""
        ...

    async def finish_requests(
        self,
        finished: Sequence[tuple[str, str, StoredResponse]],
        ttl_seconds: float,
        *,
        abandoned: Sequence[Abandon] = (),
    ) -> None:
        """:meth:`finish_request` for each ``(key, fingerprint, response)`` and :meth:`abandon_request`
        for each of ``abandoned`` (a key, or ``(key, token)``), together: the end of one batch request."""
        ...

    async def finish_and_begin_requests(
        self,
        finished: Sequence[tuple[str, str, StoredResponse]],
        abandoned: Sequence[Abandon],
        begin: Sequence[tuple[str, str]],
        *,
        ttl_seconds: float,
        lease_seconds: float,
        round_id: str | None = None,
    ) -> list[RequestClaim]:
        """:meth:`finish_requests` (``finished`` for ``ttl_seconds``, ``abandoned``), then
        :meth:`begin_requests` (``begin`` for ``lease_seconds``), atomically: the writer's round of
        the requests that ended and those that start meanwhile, in one round trip (none if all three
        are empty). The answers are for ``begin``, in order. The markers' tokens are
        ``<round_id>:<position in begin>`` (a random round id when None): a caller that got no answer
        can still abandon exactly what this call may have written."""
        ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
