"""The rate limit: at most ``rate`` handler starts per second, with a burst of at most one second's worth.

It gates the receive, not the start: a poller reserves one token per message it asks SQS for, waits
until they are its own, and only then receives. So no received message ever waits for a token (its
visibility and its receive count are never spent on waiting), and what a receive did not bring is
given back. The bucket may go into debt: a reservation is granted at once and tells how long to wait,
so pollers (and processes) queue up in the order they asked, each waiting its turn, with no polling.

Two buckets with one algorithm: :class:`LocalBucket` in the process, and :class:`RedisBucket` on Redis
(one small Lua script, the server's clock, atomic), shared by every processor naming the same key.
While Redis cannot be reached, :class:`RedisBucket` applies the limit in the process instead (each
process at the full rate: availability first), says so once in the log and counts the failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:
    import redis.asyncio

log = structlog.get_logger("conveyor.processor")
KEY_PREFIX = "conveyor:rate:"


class Bucket(Protocol):
    rate: float

    @property
    def burst(self) -> int:
        """The most tokens one reservation should ask for (a second's worth, at least one)."""

    async def reserve(self, n: int) -> float:
        """Take ``n`` tokens; returns the seconds to wait before they may be used."""

    async def refund(self, n: int) -> None:
        """Give back ``n`` tokens reserved and not used."""

    async def aclose(self) -> None: ...


def burst_of(rate: float) -> int:
    return max(1, int(rate))


class LocalBucket:
    """The bucket in this process. Starts empty: the first second is held to the rate too."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError("a rate limit is a positive number of starts per second")
        self.rate = rate
        self._capacity = max(1.0, rate)
        self._clock = clock
        self._tokens = 0.0
        self._at = clock()

    @property
    def burst(self) -> int:
        return burst_of(self.rate)

    def take(self, n: float) -> float:
        """Take ``n`` tokens (a negative ``n`` gives back); the seconds until the balance is not
        negative. The same arithmetic as :data:`RESERVE`."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + max(0.0, now - self._at) * self.rate) - n
        self._tokens = min(self._capacity, self._tokens)
        self._at = now
        return max(0.0, -self._tokens / self.rate)

    async def reserve(self, n: int) -> float:
        return self.take(n)

    async def refund(self, n: int) -> None:
        if n > 0:
            self.take(-n)

    async def aclose(self) -> None:
        return None


# KEYS[1]: the bucket; ARGV: rate, capacity, tokens to take (negative: give back), key TTL in seconds.
# Returns the seconds to wait, as a string (Redis would cut a Lua number to an integer).
RESERVE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = 0
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate) - n
tokens = math.min(capacity, tokens)
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
if tokens >= 0 then
  return '0'
end
return string.format('%.17g', -tokens / rate)
"""


class RedisBucket:
    """One bucket for every processor naming ``key``, on Redis. Owns ``client``."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        rate: float,
        key: str,
        *,
        on_failure: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self._client = client
        self._key = KEY_PREFIX + key
        self._script = client.register_script(RESERVE)
        self._local = LocalBucket(rate, clock)  # while Redis cannot be reached
        self._on_failure = on_failure
        self._failing = False
        # Kept long enough that an idle bucket refills before it expires (an expired one starts empty).
        self._ttl = int(max(1.0, rate) / rate) + 60

    @property
    def burst(self) -> int:
        return burst_of(self.rate)

    async def reserve(self, n: int) -> float:
        return await self._take(n)

    async def refund(self, n: int) -> None:
        if n > 0:
            await self._take(-n)

    async def _take(self, n: int) -> float:
        import redis.exceptions  # noqa: PLC0415 - redis is imported only with a Redis store

        try:
            answer = await self._script(keys=[self._key], args=[self.rate, max(1.0, self.rate), n, self._ttl])
        except (redis.exceptions.RedisError, OSError) as exc:
            self._on_failure()
            if not self._failing:
                self._failing = True
                log.warning("rate_limit_store_unavailable", error=type(exc).__name__, detail="limiting in this process")
            return self._local.take(n)
        if self._failing:
            self._failing = False
            log.info("rate_limit_store_back")
        return float(answer)

    async def aclose(self) -> None:
        await self._client.aclose()
