"""One canary probe: post a signed canary through the public API, wait for a processor's reply.

Latencies are measured on this host's monotonic clock: ``post_seconds`` is the POST's round trip,
``e2e_seconds`` runs from the 202 to the reply's arrival here (an upper bound of 202 -> handled: it
includes the reply's own trip through the canary queue, a few milliseconds).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from conveyor.canary.inbox import ReplyInbox
from conveyor.canary.wire import Canary, canary_body
from conveyor.sqs.errors import SQS_ERRORS, classify

STEPS = ("post", "handled", "canary_queue")  # where a probe can fail


@dataclass(frozen=True, slots=True)
class ProbeResult:
    canary_id: str
    at: float  # wall clock when the probe started
    step: str | None = None  # the failed step, None when the probe succeeded
    error: str | None = None  # one readable line
    post_seconds: float | None = None
    e2e_seconds: float | None = None
    message_id: str | None = None
    request_id: str | None = None
    processor: str | None = None
    received_at_ms: int | None = None
    handled_at_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.step is None


class ProbeFailedError(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # the public API's base URL
    api_key: str | None
    secret: bytes
    timeout: float
    fifo: bool = False  # the queue is FIFO: a canary needs a group id and a deduplication id


@dataclass(frozen=True, slots=True)
class Posted:
    message_id: str
    request_id: str | None
    seconds: float
    accepted_at: float  # monotonic


class Prober:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        target: Target,
        inbox: ReplyInbox,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._target = target
        self._inbox = inbox
        self._clock = clock
        self._wall_clock = wall_clock

    async def probe(self) -> ProbeResult:
        """Post one canary and wait for its reply, within the timeout; never raises for a failed step."""
        started, wall = self._clock(), self._wall_clock()
        canary = Canary(uuid.uuid4().hex, int(wall * 1000))
        deadline = started + self._target.timeout
        base = ProbeResult(canary.id, wall)
        try:
            posted = await self._post(canary, deadline)
        except ProbeFailedError as exc:
            return replace(base, step=exc.step, error=str(exc))
        base = replace(base, post_seconds=posted.seconds, message_id=posted.message_id, request_id=posted.request_id)
        try:
            reply = await self._inbox.wait_for(canary.id, deadline)
        except SQS_ERRORS as exc:
            failure = classify(exc)
            return replace(
                base, step="canary_queue", error=f"canary queue unreadable: {failure.code}: {failure.message}"
            )
        if reply is None:
            self._inbox.give_up(canary.id)
            error = f"not handled within {self._target.timeout:g} s (message {posted.message_id}, canary {canary.id})"
            return replace(base, step="handled", error=error)
        return replace(
            base,
            e2e_seconds=self._clock() - posted.accepted_at,
            processor=reply.processor,
            received_at_ms=reply.received_at_ms,
            handled_at_ms=reply.handled_at_ms,
        )

    async def _post(self, canary: Canary, deadline: float) -> Posted:
        target = self._target
        headers = {"X-Request-ID": f"canary-{canary.id}"}
        if target.api_key:
            headers["X-Api-Key"] = target.api_key
        url = target.url.rstrip("/") + "/messages"
        payload: dict[str, Any] = {"body": canary_body(target.secret, canary)}
        if target.fifo:  # a group of its own (it never holds up the user's groups), deduplicated by its id
            payload |= {"group_id": "conveyor-canary", "deduplication_id": f"canary-{canary.id}"}
        started = self._clock()
        timeout = aiohttp.ClientTimeout(total=max(0.001, deadline - started))
        try:
            async with self._http.post(url, json=payload, headers=headers, timeout=timeout) as response:
                text = await response.text()
                status, reason, header_id = response.status, response.reason, response.headers.get("X-Request-ID")
        except TimeoutError as exc:
            raise ProbeFailedError("post", f"POST failed: no answer from {url} within {target.timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ProbeFailedError("post", f"POST failed: cannot connect to {url} ({exc.os_error.strerror})") from exc
        except aiohttp.ClientError as exc:
            raise ProbeFailedError("post", f"POST failed: {url}: {type(exc).__name__}: {exc}") from exc
        accepted_at = self._clock()
        document = _json(text)
        request_id = document.get("request_id") or header_id
        if status != 202:
            title = document.get("title") or reason or "error"
            raise ProbeFailedError("post", f"POST refused: {status} {title} (request id {request_id or 'none'})")
        message_id = document.get("message_id")
        if not isinstance(message_id, str):
            raise ProbeFailedError("post", f"POST answered 202 without a message id (request id {request_id})")
        return Posted(message_id, request_id, accepted_at - started, accepted_at)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
