"""The one object the poller and the workers ask before they take work: :class:`Flow`.

- Before a receive (:meth:`Flow.before_receive`): wait out a throttle's pause, the open breaker and the
  rate limit's tokens, in that order; the answer is how many messages the receive may ask for.
- Once a worker took a message (:meth:`Flow.permit`): wait until fewer handlers run than the
  adaptive limit allows (idle workers hold no permit: a limit that fell holds at once); then
  (:meth:`Flow.may_start`) release it if the breaker opened, and under a rate limit start one
  token's time after the previous start (what waited in the buffer does not start in a burst).
- After each handler call (:meth:`Flow.observe`): feed the limit and the breaker with its verdict.

The limit's changes resize the slots (messages held = limit + prefetch): a processor running three
handlers at once does not hold sixty messages others could take.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from conveyor.message import Throttle
from conveyor.processor.config import FlowConfig
from conveyor.processor.engine.flow.breaker import Breaker, State
from conveyor.processor.engine.flow.limit import AdaptiveLimit
from conveyor.processor.engine.flow.rate import Bucket
from conveyor.processor.engine.health import Health
from conveyor.processor.engine.outcome import verdict
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS

log = structlog.get_logger("conveyor.processor")
TICK_SECONDS = 1.0  # a quiet processor still closes the limit's windows


class Flow:
    def __init__(
        self,
        config: FlowConfig,
        concurrency: int,
        *,
        metrics: ProcessorMetrics,
        health: Health,
        stopping: asyncio.Event,
        bucket: Bucket | None = None,
        resize: Callable[[int], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._health = health
        self._stopping = stopping
        self._bucket = bucket
        self._resize = resize  # the slots' capacity for a concurrency
        self._clock = clock
        self.limit = AdaptiveLimit(concurrency, clock(), config.latency_tolerance) if config.adaptive else None
        self.breaker = Breaker(config.breaker) if config.breaker else None
        self._most = concurrency
        self._running = 0
        self._changed = asyncio.Condition()  # a permit given back, the limit or the breaker changed
        self._paused_until = -math.inf
        self._next_start = -math.inf  # under a rate limit: the soonest the next handler may start
        metrics.concurrency_limit.set(concurrency)
        metrics.rate_limit.set(config.rate_per_second or 0)

    @property
    def concurrency(self) -> int:
        return self.limit.current if self.limit else self._most

    @property
    def breaker_closed(self) -> bool:
        return self.breaker is None or self.breaker.state is State.CLOSED

    @property
    def retry_floor(self) -> int | None:
        """While the breaker is open, the soonest a failed message may come back (else None)."""
        if self.breaker is None or self.breaker_closed or self._config.breaker is None:
            return None
        return self._config.breaker.retry_seconds

    # --- the receive ---------------------------------------------------------------------------------
    async def before_receive(self, want: int) -> int:
        """Wait until a receive may go; how many messages it may ask for (0: stopping)."""
        if self._bucket is not None:  # asked of the breaker too: a probe granted is a probe received
            want = min(want, self._bucket.burst)
        while not self._stopping.is_set():
            pause = self._paused_until - self._clock()
            if pause > 0:
                await self._wait(pause)
                continue
            granted = self._breaker_allows(want)
            if granted == 0:
                await self._wait(self._breaker_wait())
                continue
            return await self._tokens(granted)
        return 0

    async def after_receive(self, granted: int, got: int, *, answered: bool = True) -> None:
        """A receive asked for ``granted`` and brought ``got`` (``answered``: SQS answered it): the
        rest is given back."""
        if granted <= got:
            return
        if self._bucket is not None:
            await self._bucket.refund(granted - got)
        if self.breaker is not None:
            self._transition(self.breaker.unused(granted - got, self._clock(), answered=answered))

    @property
    def spacing(self) -> float:
        """Seconds between the starts of a receive's messages (0: no rate limit): see :meth:`_tokens`."""
        return 1 / self._bucket.rate if self._bucket is not None else 0.0

    async def _tokens(self, n: int) -> int:
        """Reserve ``n`` tokens and wait until the first is due: the receive goes then, and the poller
        hands its messages on one :attr:`spacing` apart (the last when the last token is due), so that
        starts are spread over the second instead of coming ten at once. A received message waits at
        most ``(n - 1) / rate``, under a second: a small fraction of any visibility timeout."""
        if self._bucket is None:
            return n
        wait = max(0.0, await self._bucket.reserve(n) - (n - 1) * self.spacing)
        if wait > 0:
            self._metrics.rate_limit_wait.inc(wait)
            await self._wait(wait, changes=False)
            if self._stopping.is_set():
                await self._bucket.refund(n)
                return 0
        return n

    def _breaker_allows(self, want: int) -> int:
        if self.breaker is None:
            return want
        before = self.breaker.state
        granted = self.breaker.allow(want, self._clock())
        if self.breaker.state is not before:
            self._transition(self.breaker.state)
        return granted

    def _breaker_wait(self) -> float:
        assert self.breaker is not None  # noqa: S101 - only asked when the breaker granted nothing
        before = self.breaker.state
        wait = self.breaker.wait(self._clock())
        if self.breaker.state is not before:  # it went half-open: said now, not at the next allow
            self._transition(self.breaker.state)
        return wait

    async def _wait(self, seconds: float | None, *, changes: bool = True) -> None:
        """Until ``seconds`` pass (None: no limit), the stop, or (with ``changes``) a change."""
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._stopping.wait())]
        if changes:
            waits.append(asyncio.ensure_future(self._change()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _change(self) -> None:
        async with self._changed:
            await self._changed.wait()

    # --- the workers ---------------------------------------------------------------------------------
    async def permit(self) -> None:
        """Wait until fewer handlers run than the limit allows, and count one more."""
        async with self._changed:
            # (the tick notifies every second: a stop frees the waiting workers within one)
            await self._changed.wait_for(lambda: self._running < self.concurrency or self._stopping.is_set())
            self._running += 1

    async def may_start(self) -> bool:
        """A worker took a message and a permit: whether to start it (False: stopping, or the breaker
        is open: release it); under a rate limit, once one token's time has passed since the last start."""
        if self._stopping.is_set() or (self.breaker is not None and self.breaker.state is State.OPEN):
            return False
        if self._bucket is not None:
            now = self._clock()
            start = max(now, self._next_start)
            self._next_start = start + self.spacing
            if start > now:
                await self._wait(start - now, changes=False)
        return not self._stopping.is_set()

    async def give_back(self) -> None:
        async with self._changed:
            self._running -= 1
            self._changed.notify_all()

    # --- what the handlers said -----------------------------------------------------------------------
    async def observe(self, started: float, errors: Sequence[BaseException | None], calls: int = 1) -> bool:
        """One handler call (a message, or a batch) that began at ``started`` ended with ``errors``
        (one per message; None: success), with ``calls`` under way (itself included). True if it
        opened the (closed) breaker: the messages held and not started are then to be released."""
        now = self._clock()
        verdicts = [verdict(error) for error in errors]
        throttles = [error for error in errors if isinstance(error, Throttle)]
        if throttles:
            self._metrics.throttled.inc(len(throttles))
            after = min(max(error.after for error in throttles), MAX_VISIBILITY_SECONDS)
            self._paused_until = max(self._paused_until, now + after)
        succeeded = all(v == "success" for v in verdicts)
        changed = self._adapt(started, now, calls, throttled=bool(throttles), succeeded=succeeded)
        opened = False
        if self.breaker is not None:
            for seen in verdicts:
                if seen in ("success", "failure"):
                    before = self.breaker.state
                    state = self.breaker.record(seen == "failure", started, now)
                    self._transition(state)
                    # From closed only: the probes let through with a failed one are few and already
                    # received (released, each would spend a receive again at the next probe).
                    opened |= state is State.OPEN and before is State.CLOSED
        if changed or throttles or opened or self.breaker is not None:
            await self._notify(resize=changed)
        return opened

    async def tick(self) -> None:
        """Close the limit's quiet windows and let a due breaker probe (every second, from the engine)."""
        while not self._stopping.is_set():
            await self._wait(TICK_SECONDS, changes=False)
            changed = self.limit.tick(self._clock()) if self.limit else False
            await self._notify(resize=changed)

    def _adapt(self, started: float, now: float, calls: int, *, throttled: bool, succeeded: bool) -> bool:
        if self.limit is None:
            return False
        if throttled:
            return self.limit.throttled(started, now)
        if succeeded:  # (the workers holding a permit may be waiting for a message: not calls)
            return self.limit.succeeded(started, now, calls)
        return self.limit.tick(now)

    async def _notify(self, *, resize: bool) -> None:
        if resize:
            current = self.concurrency
            self._metrics.concurrency_limit.set(current)
            log.info("concurrency_changed", limit=current)
            if self._resize is not None:
                await self._resize(current)
        async with self._changed:
            self._changed.notify_all()

    def _transition(self, state: State | None) -> None:
        if state is None:
            return
        name = state.name.lower()
        self._metrics.breaker_state.set(int(state))
        self._metrics.breaker_transitions.labels(name).inc()
        self._health.breaker(name)
        if state is State.OPEN:
            log.warning("breaker_open", pause_seconds=self._config.breaker.pause if self._config.breaker else None)
        else:
            log.info(f"breaker_{name}")
