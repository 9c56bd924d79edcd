"""The distributed store: Redis, through redis-py's asyncio client.

Every operation is ONE round trip: a Lua script (loaded once, then called by its SHA with EVALSHA;
redis-py loads it again if Redis forgot it) runs atomically over all the keys of a batch. Redis
expires the records itself: claims and in-flight markers with the lease, completions with the TTL
(both as PX, in milliseconds, so that leases below a second work too).

Keys of one batch are touched by one script, so Redis Cluster (keys in different slots) is not
supported; one Redis (with replicas and Sentinel failover behind one address) is.
"""

from __future__ import annotations

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
from conveyor.idempotency.store import Claim, RequestClaim, RequestState, StoredResponse

# A store that does not answer must fail fast (the writer answers 503, the processor retries later):
# short socket timeouts and one quick retry (for a pooled connection that Redis closed). URL options
# (``?socket_timeout=5``) win over these.
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
-- KEYS: handler keys; ARGV: owner, lease (ms). Only claims that owner still holds.
for _, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  if raw then
    local record = cjson.decode(raw)
    if record.state == 'claimed' and record.owner == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
  end
end
return 0
"""

COMPLETE = """
-- KEYS: handler keys; ARGV: TTL (ms), the completed record. Whoever holds the claim now.
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[2], 'PX', ARGV[1]) end
return 0
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

BEGIN = """
-- KEYS[1]: request key; ARGV: lease (ms), the in-flight record.
-- Returns {'new'}, {'in_flight', ms left}, or {'completed', the record}.
local raw = redis.call('GET', KEYS[1])
if not raw then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
  return {'new'}
end
if cjson.decode(raw).state == 'in_flight' then return {'in_flight', redis.call('PTTL', KEYS[1])} end
return {'completed', raw}
"""

ABANDON = """
-- KEYS[1]: request key. Only an in-flight marker: a completed response is kept.
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw).state == 'in_flight' then redis.call('DEL', KEYS[1]) end
return 0
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
        self._begin = client.register_script(BEGIN)
        self._abandon = client.register_script(ABANDON)

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

    async def extend(self, keys: Sequence[str], owner: str, lease_seconds: float) -> None:
        lease = records.millis(lease_seconds, "lease_seconds")
        if keys:
            await self._call(self._extend, records.handler_keys(keys), [owner, lease])

    async def complete(self, keys: Sequence[str], owner: str, ttl_seconds: float) -> None:
        ttl = records.millis(ttl_seconds, "ttl_seconds")
        if keys:
            await self._call(self._complete, records.handler_keys(keys), [ttl, records.completed_record()])

    async def release(self, keys: Sequence[str], owner: str) -> None:
        if keys:
            await self._call(self._release, records.handler_keys(keys), [owner])

    async def begin_request(self, key: str, fingerprint: str, lease_seconds: float) -> RequestClaim:
        lease = records.millis(lease_seconds, "lease_seconds")
        answer = await self._call(
            self._begin, [records.request_key(key)], [lease, records.in_flight_record(fingerprint)]
        )
        match _text(answer[0]):
            case "new":
                return RequestClaim(RequestState.NEW)
            case "in_flight":
                return RequestClaim(RequestState.IN_FLIGHT, retry_after=max(0, int(answer[1])) / 1000)
            case _:
                return records.replay(answer[1], fingerprint)

    async def finish_request(self, key: str, fingerprint: str, response: StoredResponse, ttl_seconds: float) -> None:
        ttl = records.millis(ttl_seconds, "ttl_seconds")
        record = records.response_record(fingerprint, response)
        try:
            await self._client.set(records.request_key(key), record, px=ttl)
        except (RedisError, OSError) as error:
            raise _unavailable(error) from error

    async def abandon_request(self, key: str) -> None:
        await self._call(self._abandon, [records.request_key(key)], [])

    async def _call(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            raise _unavailable(error) from error


def _unavailable(error: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(f"Redis store: {type(error).__name__}: {error}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
