"""``Idempotency-Key`` replay (the IETF httpapi draft's and Stripe's semantics; docs/idempotency.md).

With ``CONVEYOR_IDEMPOTENCY_STORE`` set, a request (or batch entry) with a key begins in the store:

- NEW: the key is ours (an in-flight marker); the message is sent, and on success its answer is
  remembered with the request's fingerprint; on any failure the marker is dropped, so that the
  client retries with the same key;
- REPLAY: the same request succeeded before: its answer again (``Idempotent-Replayed: true``), and
  nothing goes to SQS;
- MISMATCH: the key was used for another request: 422;
- IN_FLIGHT: the first request with the key is still running: 409 with ``Retry-After``.

A store that cannot answer is a 503: the client asked for once-only, which the writer cannot promise
without it. One store round trip begins a request (all the entries of a batch together), one ends it;
the requests that end and begin while a round trip is under way share the next one, which ends the
finished and begins the new in one call (:mod:`conveyor.writer.replay.coalescer`).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import structlog
from fastapi.responses import JSONResponse, Response

from conveyor.idempotency import (
    Abandon,
    IdempotencyStore,
    RequestClaim,
    RequestState,
    StoredResponse,
    StoreUnavailableError,
    records,
)
from conveyor.payloads.client import READ_TIMEOUT_SECONDS as S3_READ_TIMEOUT_SECONDS
from conveyor.settings import WriterSettings
from conveyor.sqs.batcher import longest_hold
from conveyor.sqs.client import READ_TIMEOUT_SECONDS
from conveyor.writer.api.problems import EntryProblem
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.replay.coalescer import Coalescer
from conveyor.writer.replay.keyed import Keyed

log = structlog.get_logger("conveyor.writer")
REPLAYED_HEADER = "Idempotent-Replayed"
BACKOFF_MARGIN_SECONDS = 10.0  # botocore's and the resends' backoff between attempts, generously
MAX_KEYS_PER_CALL = 200  # keys per store round when requests are coalesced (a batch request's stay together)


@dataclass(frozen=True, slots=True)
class Step:
    """What one request asks of the store in a round: to begin its key, or to end it (finished with
    its response, or abandoned)."""

    keyed: Keyed
    ends: bool = False
    response: StoredResponse | None = None  # for a finished request
    token: str | None = None  # for an abandoned one: its marker's (only that marker is dropped)


def in_flight_lease_seconds(settings: WriterSettings) -> float:
    """How long an in-flight marker holds its key: the longest a send can take with these settings
    (every attempt of every resend timing out), so that a repeat never starts a second send while
    the first may still reach SQS. A writer killed mid-request holds its keys that long (a repeat
    meanwhile is a 409). 83 s with the default settings (272 s with a payload bucket)."""
    read = settings.sqs_read_timeout_seconds or READ_TIMEOUT_SECONDS
    per_call = settings.sqs_max_attempts * (settings.sqs_connect_timeout_seconds + read)
    hold = longest_hold(settings.send_linger_seconds, eager=settings.send_eagerly)  # for company, before the call
    # With a payload bucket the S3 put comes first, and may take its own attempts at S3's read timeout.
    store = settings.sqs_max_attempts * (settings.sqs_connect_timeout_seconds + S3_READ_TIMEOUT_SECONDS)
    return (
        (settings.send_retries + 1) * per_call
        + hold
        + BACKOFF_MARGIN_SECONDS
        + (store if settings.payload_bucket else 0)
    )


def replayed(stored: StoredResponse) -> Response:
    return Response(
        stored.body, status_code=stored.status, media_type=stored.content_type, headers={REPLAYED_HEADER: "true"}
    )


class Replay:
    """The writer's side of the idempotency store."""

    def __init__(self, store: IdempotencyStore, settings: WriterSettings, metrics: WriterMetrics) -> None:
        self._store = store
        self._lease = in_flight_lease_seconds(settings)
        self._ttl = settings.idempotency_ttl_seconds
        self._retry_after = settings.retry_after_seconds
        self._metrics = metrics
        self._rounds = Coalescer(self._round, max_items=MAX_KEYS_PER_CALL)

    async def __aenter__(self) -> Self:
        await self._rounds.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._rounds.__aexit__(et, e, tb)

    async def _round(self, steps: list[Step]) -> list[RequestClaim | None]:
        """One store round trip for the steps gathered: the ends first, then the beginnings."""
        finished = [(s.keyed.key, s.keyed.fingerprint, s.response) for s in steps if s.ends and s.response]
        abandoned: list[Abandon] = [_abandon(s) for s in steps if s.ends and s.response is None]
        begin = [(s.keyed.key, s.keyed.fingerprint) for s in steps if not s.ends]
        round_id = uuid.uuid4().hex
        try:
            claims = iter(
                await self._store.finish_and_begin_requests(
                    finished, abandoned, begin, ttl_seconds=self._ttl, lease_seconds=self._lease, round_id=round_id
                )
            )
        except StoreUnavailableError:
            self._undo_begin(begin, round_id)
            raise
        return [None if s.ends else next(claims) for s in steps]

    def _undo_begin(self, begin: list[tuple[str, str]], round_id: str) -> None:
        """A round without an answer may still have been carried out (Redis ran the script, its answer
        was lost): drop the markers it may have written, by their tokens, in the next round, so that
        the client's retry after the 503 is not a 409 for the marker's lease. Best effort."""
        if not begin:
            return
        firsts = {key: i for i, (key, _) in reversed(list(enumerate(begin)))}  # only a key's first position can be NEW
        tokens = records.marker_tokens(round_id, len(begin))
        steps = [Step(Keyed(key, ""), ends=True, token=tokens[i]) for key, i in firsts.items()]
        self._rounds.post(steps, on_error=lambda exc: log.warning("idempotency_undo_failed", error=str(exc)))

    async def begin(self, requests: Sequence[Keyed]) -> list[RequestClaim]:
        """Begin every request in one round trip (shared with the requests that arrive meanwhile);
        :class:`EntryProblem` 503 if the store cannot answer."""
        try:
            claims = [c for c in await self._rounds.submit([Step(r) for r in requests]) if c is not None]
        except StoreUnavailableError as exc:
            log.error("idempotency_store_unavailable", error=str(exc))
            self._metrics.idempotency.labels("store_unavailable").inc(len(requests))
            raise EntryProblem(
                503, "Idempotency store unavailable",
                "the store that makes a key's request happen once cannot answer: nothing was sent; retry later",
                retryable=True,
            ) from exc  # fmt: skip
        for claim in claims:
            self._metrics.idempotency.labels(claim.state.value).inc()
        return claims

    async def end(
        self, finished: Sequence[tuple[Keyed, StoredResponse]], abandoned: Sequence[tuple[Keyed, str | None]]
    ) -> None:
        """Remember the successes and drop the markers of the failures, in one round trip. Never
        raises: the answer is known already. If the store cannot answer, the markers expire after
        their lease (a repeat meanwhile is a 409, then the request is sent again)."""
        steps = [Step(k, ends=True, response=response) for k, response in finished]
        try:
            await self._rounds.submit([*steps, *(Step(k, ends=True, token=token) for k, token in abandoned)])
        except StoreUnavailableError as exc:
            log.warning(
                "idempotency_store_not_updated", error=str(exc), finished=len(finished), abandoned=len(abandoned)
            )

    def refusal(self, claim: RequestClaim, field: str) -> EntryProblem:
        """The problem for a key that cannot be sent now: MISMATCH or IN_FLIGHT."""
        if claim.state is RequestState.MISMATCH:
            return EntryProblem(
                422, "Idempotency key reused",
                f"{field}: this key was used for a different request (another message, content type, queue or "
                "route); a new request needs a new key",
                field=field,
            )  # fmt: skip
        left = math.ceil(claim.retry_after or 0)
        return EntryProblem(
            409, "Request in progress",
            f"{field}: a request with this key is still being handled; repeat it to get its answer",
            field=field, retryable=True, retry_after=max(1, min(self._retry_after, left)),
        )  # fmt: skip

    async def once(self, keyed: Keyed, send: Callable[[], Awaitable[JSONResponse]]) -> Response:
        """``send`` once for this key: its answer is remembered, and a repeat gets it again."""
        [claim] = await self.begin([keyed])
        if claim.state is RequestState.REPLAY and claim.response is not None:
            return replayed(claim.response)
        if claim.state is not RequestState.NEW:
            raise self.refusal(claim, "Idempotency-Key")
        try:
            response = await send()
        except BaseException:
            await self.end([], [(keyed, claim.token)])
            raise
        stored = StoredResponse(response.status_code, bytes(response.body), "application/json")
        await self.end([(keyed, stored)], [])
        return response


def _abandon(step: Step) -> Abandon:
    return step.keyed.key if step.token is None else (step.keyed.key, step.token)
