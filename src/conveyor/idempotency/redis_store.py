"""The distributed store: Redis, through redis-py's asyncio client.

Every operation is ONE round trip: a Lua script (loaded once, then called by its SHA with EVALSHA;
redis-py loads it again if Redis forgot it) runs atomically over all the keys of a batch. Redis
expires the records itself: claims and in-flight markers with the lease, completions with the TTL
(both as PX, in milliseconds, so that leases below a second work too).

Keys of one batch are touched by one script, so Redis Cluster (keys in different slots) is not
supported; one Redis (with replicas and Sentinel failover behind one address) is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from conveyor.idempotency import records
from conveyor.idempotency.errors import StoreUnavailableError
from conveyor.idempotency.store import Abandon, Claim, RequestClaim, RequestState, StoredResponse

# A store that does not answer must fail fast (the writer answers 503, the processor retries later):
# short socket timeouts and one quick retry (for a pooled connection that Redis closed). URL options
# (``?socket_timeout=5``) win over these.
#
# The retry also follows a timeout, when Redis may have run the script and only its answer was lost:
# so every script below gives the same answer and leaves the same state when run twice with the same
# arguments. CLAIM: a key the first run claimed is this owner's, so it is CLAIMED again (lease
# renewed); EXTEND renews the same leases; COMPLETE sets the same value (a key it marked is completed,
# not another owner's claim, so it is marked again) and leaves the same claims alone; RELEASE finds this owner's
# claims gone (another owner's are left alone); FINISH_AND_BEGIN: see its comment (the in-flight markers
# carry a per-round, per-position token).
SOCKET_TIMEOUT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 2.0

CLAIM = """
-- KEYS: handler keys; ARGV: owner, lease (ms), the claim record
local answers = {}
for i, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  if not raw then
    redis.call('SET', key, ARGV[3], 'PX', ARGV[2])
    answers[i] = 'claimed'
  else
    local record = cjson.decode(raw)
    if record.state == 'completed' then
      answers[i] = 'completed'
    elseif record.owner == ARGV[1] then
      redis.call('PEXPIRE', key, ARGV[2])
      answers[i] = 'claimed'
    else
      answers[i] = 'in_progress'
    end
  end
end
return answers
"""

EXTEND = """
-- KEYS: handler keys; ARGV: owner, lease (ms). Only claims that owner still holds; per key, 1 when
-- renewed, 0 when that owner no longer holds it.
local renewed = {}
for i, key in ipairs(KEYS) do
  renewed[i] = 0
  local raw = redis.call('GET', key)
  if raw then
    local record = cjson.decode(raw)
    if record.state == 'claimed' and record.owner == ARGV[1] then
      redis.call('PEXPIRE', key, ARGV[2])
      renewed[i] = 1
    end
  end
end
return renewed
"""

COMPLETE = """
-- KEYS: handler keys; ARGV: owner, TTL (ms), the completed record. Every key but those another
-- owner holds a live claim of; per key, 1 when marked, 0 when left to that owner.
local marked = {}
for i, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  local record = raw and cjson.decode(raw)
  if record and record.state == 'claimed' and record.owner ~= ARGV[1] then
    marked[i] = 0
  else
    redis.call('SET', key, ARGV[3], 'PX', ARGV[2])
    marked[i] = 1
  end
end
return marked
"""

RELEASE = """
-- KEYS: handler keys; ARGV: owner. Only claims that owner still holds.
for _, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  if raw then
    local record = cjson.decode(raw)
    if record.state == 'claimed' and record.owner == ARGV[1] then redis.call('DEL', key) end
  end
end
return 0
"""

FINISH_AND_BEGIN = """
-- One writer round: KEYS are the finished request keys, then the abandoned ones, then the keys to
-- begin. ARGV[1]: TTL (ms) of the finished; ARGV[2]: lease (ms) of the begun; ARGV[3], ARGV[4]: how
-- many are finished, abandoned; ARGV[4 + i]: the record of KEYS[i] (a response record for a finished
-- key, an in-flight record for a key to begin, for an abandoned one the token of the marker to drop
-- or '' for any).
-- Abandoned: only an in-flight marker is dropped (a completed response is kept), and with a token
-- only the marker that carries it (never one another request wrote after this one's lease ended). Returns one JSON
-- array with, per key to begin in order, ["new"], ["in_flight", ms left] or ["completed", the
-- record]: one string to read rather than a nested reply (redis-py parses those element by element).
-- Run again with the same ARGV (redis-py retries once after a timeout, when Redis may have run the
-- first call and only its answer was lost), it answers the same: a marker byte-equal to the one
-- this position writes carries this round's and position's token, so it is this call's own (NEW
-- again); finished records are set again to the same value; an abandoned marker is gone (with a
-- token, another writer's marker set in between is left alone).
local finished, abandoned = tonumber(ARGV[3]), tonumber(ARGV[4])
local answers = {}
for i, key in ipairs(KEYS) do
  local raw = nil
  if i > finished then raw = redis.call('GET', key) end
  if i <= finished then
    redis.call('SET', key, ARGV[4 + i], 'PX', ARGV[1])
  elseif i <= finished + abandoned then
    if raw then
      local record = cjson.decode(raw)
      if record.state == 'in_flight' and (ARGV[4 + i] == '' or record.token == ARGV[4 + i]) then
        redis.call('DEL', key)
      end
    end
  elseif not raw or raw == ARGV[4 + i] then
    redis.call('SET', key, ARGV[4 + i], 'PX', ARGV[2])
    answers[#answers + 1] = {'new'}
  elseif cjson.decode(raw).state == 'in_flight' then
    answers[#answers + 1] = {'in_flight', redis.call('PTTL', key)}
  else
    answers[#answers + 1] = {'completed', raw}
  end
end
if #answers == 0 then return '[]' end
return cjson.encode(answers)
"""


def redis_client(url: str) -> redis.asyncio.Redis:
    """A client (and its connection pool) for a URL checked by :func:`parse_store_url`."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.02), retries=1),
    )


class RedisStore:
    """See :class:`~conveyor.idempotency.IdempotencyStore`. Owns ``client`` (closed by ``aclose``)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._claim = client.register_script(CLAIM)
        self._extend = client.register_script(EXTEND)
        self._complete = client.register_script(COMPLETE)
        self._release = client.register_script(RELEASE)
        self._finish_and_begin = client.register_script(FINISH_AND_BEGIN)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def claim(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[Claim]:
        lease = records.millis(lease_seconds, "lease_seconds")
        if not keys:
            return []
        answers = await self._call(self._claim, records.handler_keys(keys), [owner, lease, records.claim_record(owner)])
        return [Claim(_text(answer)) for answer in answers]

    async def extend(self, keys: Sequence[str], owner: str, lease_seconds: float) -> list[bool]:
        lease = records.millis(lease_seconds, "lease_seconds")
        if not keys:
            return []
        answers = await self._call(self._extend, records.handler_keys(keys), [owner, lease])
        return [int(answer) == 1 for answer in answers]

    async def complete(self, keys: Sequence[str], owner: str, ttl_seconds: float) -> list[bool]:
        ttl = records.millis(ttl_seconds, "ttl_seconds")
        if not keys:
            return []
        args: list[str | int] = [owner, ttl, records.completed_record()]
        answers = await self._call(self._complete, records.handler_keys(keys), args)
        return [int(answer) == 1 for answer in answers]

    async def release(self, keys: Sequence[str], owner: str) -> None:
        if keys:
            await self._call(self._release, records.handler_keys(keys), [owner])

    async def begin_request(self, key: str, fingerprint: str, lease_seconds: float) -> RequestClaim:
        [claim] = await self.begin_requests([(key, fingerprint)], lease_seconds)
        return claim

    async def begin_requests(self, requests: Sequence[tuple[str, str]], lease_seconds: float) -> list[RequestClaim]:
        return await self.finish_and_begin_requests((), (), requests, ttl_seconds=1, lease_seconds=lease_seconds)

    async def finish_request(self, key: str, fingerprint: str, response: StoredResponse, ttl_seconds: float) -> None:
        ttl = records.millis(ttl_seconds, "ttl_seconds")
        record = records.response_record(fingerprint, response)
        try:
            await self._client.set(records.request_key(key), record, px=ttl)
        except (RedisError, OSError) as error:
            raise _unavailable(error) from error

    async def abandon_request(self, key: str, token: str | None = None) -> None:
        await self.finish_and_begin_requests(
            (), [key if token is None else (key, token)], (), ttl_seconds=1, lease_seconds=1
        )

    async def finish_requests(
        self,
        finished: Sequence[tuple[str, str, StoredResponse]],
        ttl_seconds: float,
        *,
        abandoned: Sequence[Abandon] = (),
    ) -> None:
        await self.finish_and_begin_requests(finished, abandoned, (), ttl_seconds=ttl_seconds, lease_seconds=1)

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
        ttl, lease = records.millis(ttl_seconds, "ttl_seconds"), records.millis(lease_seconds, "lease_seconds")
        if not (finished or abandoned or begin):
            return []
        dropped = records.abandons(abandoned)
        tokens = records.marker_tokens(round_id, len(begin))
        keys = [records.request_key(key) for key, _, _ in finished]
        keys += [records.request_key(key) for key, _ in dropped] + [records.request_key(key) for key, _ in begin]
        values = [records.response_record(fingerprint, response) for _, fingerprint, response in finished]
        values += [token or "" for _, token in dropped]
        values += records.in_flight_records([fingerprint for _, fingerprint in begin], tokens)
        answers = json.loads(
            await self._call(self._finish_and_begin, keys, [ttl, lease, len(finished), len(dropped), *values])
        )
        return [
            _request_claim(answer, fingerprint, token)
            for answer, (_, fingerprint), token in zip(answers, begin, tokens, strict=True)
        ]

    async def _call(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            raise _unavailable(error) from error


def _request_claim(answer: list[Any], fingerprint: str, token: str) -> RequestClaim:
    match answer[0]:
        case "new":
            return RequestClaim(RequestState.NEW, token=token)
        case "in_flight":
            return RequestClaim(RequestState.IN_FLIGHT, retry_after=max(0, int(answer[1])) / 1000)
        case _:
            return records.replay(answer[1], fingerprint)


def _unavailable(error: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(f"Redis store: {type(error).__name__}: {error}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
