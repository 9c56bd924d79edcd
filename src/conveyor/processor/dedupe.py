"""Effectively once: a handler completion happens once per key (with an idempotency store).

A message's key is its ``conveyor.idempotency_key`` attribute (the writer sets it from the client's
``Idempotency-Key``), else its SQS message id (which covers SQS's own redeliveries), or what the
handler's own key function (:func:`conveyor.idempotent`) says. Before the handler runs, the keys of a
received batch are claimed in ONE store round trip (:meth:`Dedupe.admit`):

- claimed: ours; the handler runs. Success records the completion (batched: one round trip for the
  completions of up to ten messages), then the message is deleted; a failure releases the claim.
- completed (within ``CONVEYOR_IDEMPOTENCY_TTL_SECONDS``): a duplicate; deleted without running the
  handler (``conveyor_processor_duplicates_skipped_total``).
- in progress elsewhere: deferred, visible again after a backoff
  (``conveyor_processor_duplicates_deferred_total``).

A claim lasts as long as the message's visibility and a margin; the heartbeat extends both together.
While the store cannot answer, a received batch waits, held, for its claim (nothing runs without it,
and no receive is burnt; readiness is off meanwhile). The window that stays
open: a crash after the handler's side effect and before the completion is recorded runs the handler
again once the claim expires.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import structlog

from conveyor.idempotency import Claim, IdempotencyStore, StoreUnavailableError
from conveyor.message import Message
from conveyor.metadata import IDEMPOTENCY_KEY
from conveyor.processor.lease import Lease
from conveyor.sqs.batcher import Batcher

log = structlog.get_logger("conveyor.processor")
CLAIM_MARGIN_SECONDS = 5.0  # a claim outlives the message's visibility by this much

type KeyFunction = Callable[[Message], str]


def default_owner() -> str:
    """This process, as the store's claims name it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dedupe:
    def __init__(
        self,
        store: IdempotencyStore,
        *,
        visibility_timeout: float,
        ttl_seconds: float,
        linger: float,
        key_of: KeyFunction | None = None,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._lease = visibility_timeout + CLAIM_MARGIN_SECONDS
        self._ttl = ttl_seconds
        self._key_of = key_of
        self.owner = owner or default_owner()
        self._completions: Batcher[str, None] = Batcher(self._complete, linger=linger)
        self._releases: Batcher[str, None] = Batcher(self._release, linger=linger)
        self._extending: asyncio.Task[None] | None = None
        # Keys claimed by a message this process still holds: the store answers CLAIMED to its owner
        # (a redelivery to us), so a second copy held here at the same time is told apart locally.
        self._holders: dict[str, Lease] = {}

    async def __aenter__(self) -> Self:
        await self._completions.__aenter__()
        await self._releases.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._releases.__aexit__(et, e, tb)
        finally:
            await self._completions.__aexit__(et, e, tb)
            if self._extending is not None:
                await asyncio.gather(self._extending, return_exceptions=True)

    def key(self, lease: Lease) -> str:
        """The message's key: the handler's key function, the writer's idempotency key, or its id."""
        if self._key_of is not None:
            try:
                return str(self._key_of(lease.message()))
            except Exception as exc:  # noqa: BLE001 - a broken key function falls back to the id
                log.warning("idempotency_key_function_failed", message_id=lease.message_id, error=type(exc).__name__)
                return lease.message_id
        attribute = lease.attributes.get(IDEMPOTENCY_KEY, {})
        return str(attribute.get("StringValue") or lease.message_id)

    async def admit(self, leases: Sequence[Lease]) -> None:
        """Claim the keys of a received batch (one round trip); each lease learns its claim."""
        keys = [self.key(lease) for lease in leases]
        claims = await self._store.claim(keys, self.owner, self._lease)  # StoreUnavailableError: the poller waits
        for lease, key, claim in zip(leases, keys, claims, strict=True):
            lease.dedupe_key = key
            if claim is Claim.CLAIMED and key in self._holders:  # another copy is held here right now
                lease.claim = Claim.IN_PROGRESS
            else:
                lease.claim = claim
                if claim is Claim.CLAIMED:
                    self._holders[key] = lease

    def extend(self, leases: Sequence[Lease]) -> None:
        """Renew the claims of messages the heartbeat is extending (one store call at a time; a slow
        store never holds up the heartbeat itself)."""
        keys = [lease.dedupe_key for lease in leases if lease.claim is Claim.CLAIMED and lease.dedupe_key]
        if not keys or (self._extending is not None and not self._extending.done()):
            return
        self._extending = asyncio.get_running_loop().create_task(self._extend(keys))

    async def _extend(self, keys: list[str]) -> None:
        try:
            await self._store.extend(keys, self.owner, self._lease)
        except StoreUnavailableError as exc:
            log.warning("idempotency_extend_failed", error=str(exc.__cause__ or exc)[:200])

    def completed(self, lease: Lease, then: Callable[[], None]) -> None:
        """The handler succeeded: record the completion, then ``then`` (the delete) — whatever the
        store says: the handler ran, and keeping the message would only run it again."""
        key = self._held_key(lease)
        if key is None:
            then()
            return
        future = self._completions.submit_nowait(key)

        def done(f: asyncio.Future[None]) -> None:
            _log_failure(f, "idempotency_complete_failed")
            self._holders.pop(key, None)
            then()

        future.add_done_callback(done)

    def failed(self, lease: Lease, then: Callable[[], None] = lambda: None) -> None:
        """The handler failed, or the message goes back unhandled: release the claim so the next
        delivery may run it, then ``then`` (making it visible: so that the next delivery finds the
        claim released, not still held by this copy)."""
        key = self._held_key(lease)
        if key is None:
            then()
            return
        future = self._releases.submit_nowait(key)

        def done(f: asyncio.Future[None]) -> None:
            _log_failure(f, "idempotency_release_failed")
            self._holders.pop(key, None)
            then()

        future.add_done_callback(done)

    def _held_key(self, lease: Lease) -> str | None:
        """The key ``lease`` holds the claim of (once: a second call finds nothing)."""
        key = lease.dedupe_key
        if lease.claim is not Claim.CLAIMED or key is None or self._holders.get(key) is not lease:
            return None
        lease.claim = None  # settled: whatever comes next, this lease no longer speaks for the key
        return key

    async def _complete(self, keys: Sequence[str]) -> list[None]:
        await self._store.complete(keys, self.owner, self._ttl)
        return [None] * len(keys)

    async def _release(self, keys: Sequence[str]) -> list[None]:
        await self._store.release(keys, self.owner)
        return [None] * len(keys)


def _log_failure(future: asyncio.Future[None], event: str) -> None:
    if future.cancelled():
        log.warning(event, error="cancelled")
    elif (exc := future.exception()) is not None:
        log.warning(event, error=str(exc.__cause__ or exc)[:200])
