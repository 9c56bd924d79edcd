"""Effectively once: a handler completion happens once per key (with an idempotency store).

A message's key: see :mod:`conveyor.processor.engine.claim_keys`. Before the handler runs, the keys of a
received batch are claimed in ONE store round trip (:meth:`Dedupe.admit`):

- claimed: ours; the handler runs. Success records the completion (batched: one round trip for the
  completions of up to ten messages), then the message is deleted; a failure releases the claim.
- completed (within ``CONVEYOR_IDEMPOTENCY_TTL_SECONDS``): a duplicate; deleted without running the
  handler (``conveyor_processor_duplicates_skipped_total``).
- in progress elsewhere: deferred, visible again after a backoff
  (``conveyor_processor_duplicates_deferred_total``).

A claim lasts as long as the message's visibility and a margin; the heartbeat extends both together.
While the store cannot answer, a received batch waits, held, for its claim (nothing runs without it,
and no receive is burnt; readiness is off meanwhile).

The windows that stay open: a crash after the handler's side effect and before the completion is
recorded runs the handler again once the claim expires; and a store that cannot be reached for about
half a lease while a handler runs lets its claim end. When the store answers again, a claim that
ended is taken back if nobody took it meanwhile; if another process claimed (or completed) the key,
that process's run stands: this one's completion is a duplicate, counted and logged as one
(``conveyor_processor_duplicates_completed_total``, ``duplicate_completed``), never recorded over it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import structlog

from conveyor.idempotency import Claim, IdempotencyStore, StoreUnavailableError
from conveyor.processor.engine.claim_keys import KeyFunction, default_owner, message_key
from conveyor.processor.engine.claim_memory import CompletedHere, Unrecorded
from conveyor.processor.engine.lease import Lease
from conveyor.sqs.batcher import Batcher

log = structlog.get_logger("conveyor.processor")
CLAIM_MARGIN_SECONDS = 5.0  # a claim outlives the message's visibility by this much


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._lease = visibility_timeout + CLAIM_MARGIN_SECONDS
        self._ttl = ttl_seconds
        self._key_of = key_of
        self._clock = clock
        self.owner = owner or default_owner()
        self._completions: Batcher[str, bool] = Batcher(self._complete, linger=linger)
        self._releases: Batcher[str, None] = Batcher(self._release, linger=linger)
        self._renewing: asyncio.Task[None] | None = None
        # Keys claimed by a message this process still holds: the store answers CLAIMED to its owner
        # (a redelivery to us), so a second copy held here at the same time is told apart locally.
        self._holders: dict[str, Lease] = {}
        self._claimed_until: dict[str, float] = {}  # key -> when (by ``clock``) its claim ends unless renewed
        self._unrecorded = Unrecorded()  # completions the store missed (see claim_memory)
        # Keys whose lapsed claim is being taken back (key -> released meanwhile): a release sent
        # during the re-take may land before it, and the re-take would then write the claim again.
        self._retaking: dict[str, bool] = {}
        self._completed_here = CompletedHere(self._lease, clock)  # for a lease (see claim_memory)

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
            if self._renewing is not None:
                await asyncio.gather(self._renewing, return_exceptions=True)
            if self._unrecorded:  # one last try; what still fails is logged (it may run again)
                await self._record(list(self._unrecorded))

    def key(self, lease: Lease) -> str:
        """The message's key (see :func:`message_key`)."""
        return message_key(lease, self._key_of)

    async def admit(self, leases: Sequence[Lease]) -> None:
        """Claim the keys of a received batch (one round trip); each lease learns its claim."""
        keys = [self.key(lease) for lease in leases]
        sent_at = self._clock()
        claims = await self._store.claim(keys, self.owner, self._lease)  # StoreUnavailableError: the poller waits
        for lease, key, claim in zip(leases, keys, claims, strict=True):
            lease.dedupe_key = key
            lease.claim = self._as_seen_here(key, claim)
            if lease.claim is Claim.CLAIMED:
                self._holders[key] = lease
                self._claimed_until[key] = sent_at + self._lease

    def _as_seen_here(self, key: str, claim: Claim) -> Claim:
        if key in self._unrecorded:  # completed here; the store does not know it yet
            return Claim.COMPLETED
        if claim is Claim.CLAIMED and key in self._completed_here:
            return Claim.COMPLETED
        if claim is Claim.CLAIMED and key in self._holders:  # another copy is held here right now
            return Claim.IN_PROGRESS
        return claim

    def renew(self) -> asyncio.Task[None] | None:
        """Each heartbeat tick: renew the claims within half a lease of their end (one that failed is
        tried again on the next tick, well before it ends), take back those that ended meanwhile (the
        store could not be reached for half a lease), and record the completions the store missed.
        One store call at a time: a slow store never holds up the heartbeat itself. Returns the
        renewal it started, if any."""
        if self._renewing is not None and not self._renewing.done():
            return None
        now = self._clock()
        for key in [key for key in self._claimed_until if not self._still_held(key)]:
            del self._claimed_until[key]  # left to its timeout (a thread that cannot be stopped): its claim ends
        due = [key for key, until in self._claimed_until.items() if until - now <= self._lease / 2]
        if not (due or self._unrecorded):
            return None
        self._renewing = asyncio.get_running_loop().create_task(self._renew(due, now))
        return self._renewing

    def _still_held(self, key: str) -> bool:
        holder = self._holders.get(key)
        return holder is not None and holder.held_by_handler

    def _renewable(self, key: str) -> bool:
        """Its claim is still this process's to renew (not settled, not lost)."""
        return key in self._claimed_until and self._still_held(key)

    async def _renew(self, due: list[str], sent_at: float) -> None:
        if due:
            try:
                renewed = await self._store.extend(due, self.owner, self._lease)
                answers = list(zip(due, renewed, strict=True))
            except Exception as exc:  # noqa: BLE001 - an outage or a store's bug: tried again next tick
                log.warning("idempotency_extend_failed", keys=len(due), error=_describe(exc))
            else:
                ended = []
                for key, held in answers:
                    if not self._renewable(key):
                        continue  # settled meanwhile
                    if held:
                        self._claimed_until[key] = sent_at + self._lease
                    else:
                        ended.append(key)
                if ended:
                    await self._take_back(ended, sent_at)
        if self._unrecorded:
            await self._record(list(self._unrecorded))

    async def _take_back(self, keys: list[str], sent_at: float) -> None:
        """Claims that ended while their handler runs (renewals failed for half a lease): claimed
        again where nobody took the key meanwhile; lost where another process claimed or completed
        it (the handler cannot be stopped: its completion will be a duplicate)."""
        holders = {key: self._holders[key] for key in keys}
        self._retaking = dict.fromkeys(keys, False)
        try:
            claims = await self._store.claim(keys, self.owner, self._lease)
            answers = list(zip(keys, claims, strict=True))
        except Exception as exc:  # noqa: BLE001 - an outage or a store's bug: still due, tried again next tick
            log.warning("idempotency_extend_failed", keys=len(keys), error=_describe(exc))
            return
        finally:
            released, self._retaking = self._retaking, {}
        again = []
        for key, claim in answers:
            if self._renewable(key):
                if claim is Claim.CLAIMED:
                    self._claimed_until[key] = sent_at + self._lease
                    log.warning("idempotency_claim_taken_back", key=key, message_id=holders[key].message_id)
                else:
                    self._lose(key, claim)
            elif claim is Claim.CLAIMED and released[key] and self._holders.get(key) in (None, holders[key]):
                again.append(key)  # released meanwhile, and the re-take landed after the release
        if again:
            try:
                await self._store.release(again, self.owner)
            except Exception as exc:  # noqa: BLE001 - left to end with its lease
                log.warning("idempotency_release_failed", keys=len(again), error=_describe(exc))

    def _lose(self, key: str, claim: Claim) -> None:
        """Another process holds the key now (or completed it): its run stands. This lease no longer
        speaks for the key: nothing of it is recorded, renewed or released."""
        lease = self._holders.pop(key)
        del self._claimed_until[key]
        lease.claim, lease.claim_lost = None, True
        held_by = "completed elsewhere" if claim is Claim.COMPLETED else "another process"
        log.error("idempotency_claim_lost", key=key, message_id=lease.message_id, held_by=held_by)

    async def _record(self, keys: list[str]) -> None:
        """Record completions the store missed before; those it takes are no longer kept here (and
        one it leaves to another owner's claim is a duplicate)."""
        try:
            marked = await self._store.complete(keys, self.owner, self._ttl)
            answers = list(zip(keys, marked, strict=True))
        except Exception as exc:  # noqa: BLE001 - an outage or a store's bug: kept, tried again (never raises)
            log.warning("idempotency_complete_failed", keys=len(keys), error=_describe(exc))
            return
        for key, ours in answers:
            duplicate = self._unrecorded.pop(key, None)
            if not ours and duplicate is not None:
                duplicate()

    def completed(self, lease: Lease, then: Callable[[], None], duplicate: Callable[[], None] = lambda: None) -> None:
        """The handler succeeded: record the completion, then ``then`` (the delete) — whatever the
        store says: the handler ran, and keeping the message would only run it again. A completion
        the store missed is kept here and recorded again on the next ticks. ``duplicate`` (before
        ``then``, or when a missed completion is recorded later) when the key was another
        process's meanwhile: this lease's claim was lost while the handler ran, and the completion
        is not recorded over that process's claim."""
        if lease.claim_lost:
            duplicate()
            then()
            return
        key = self._held_key(lease)
        if key is None:
            then()
            return
        future = self._completions.submit_nowait(key)

        def done(f: asyncio.Future[bool]) -> None:
            if _log_failure(f, "idempotency_complete_failed"):
                self._unrecorded.remember(key, duplicate)
            elif not f.result():  # another process claimed the key after this one's claim ended
                duplicate()
            self._completed_here.remember(key)
            self._let_go(key)
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
        if key in self._retaking:
            self._retaking[key] = True
        future = self._releases.submit_nowait(key)

        def done(f: asyncio.Future[None]) -> None:
            _log_failure(f, "idempotency_release_failed")
            self._let_go(key)
            then()

        future.add_done_callback(done)

    def _held_key(self, lease: Lease) -> str | None:
        """The key ``lease`` holds the claim of (once: a second call finds nothing)."""
        key = lease.dedupe_key
        if lease.claim is not Claim.CLAIMED or key is None or self._holders.get(key) is not lease:
            return None
        lease.claim = None  # settled: whatever comes next, this lease no longer speaks for the key
        self._claimed_until.pop(key, None)  # no longer renewed
        return key

    def _let_go(self, key: str) -> None:
        self._holders.pop(key, None)

    async def _complete(self, keys: Sequence[str]) -> list[bool]:
        return await self._store.complete(keys, self.owner, self._ttl)

    async def _release(self, keys: Sequence[str]) -> list[None]:
        await self._store.release(keys, self.owner)
        return [None] * len(keys)


def _log_failure(future: asyncio.Future[bool] | asyncio.Future[None], event: str) -> bool:
    """Log a failed store call; True when it failed."""
    if future.cancelled():
        log.warning(event, error="cancelled")
        return True
    if (exc := future.exception()) is not None:
        log.warning(event, error=_describe(exc))
        return True
    return False


def _describe(exc: BaseException) -> str:
    """An outage by its cause; anything else (a bug) with its type."""
    if isinstance(exc, StoreUnavailableError):
        return str(exc.__cause__ or exc)[:200]
    return repr(exc)[:200]
