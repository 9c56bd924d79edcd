"""The processor's side of the canary: recognise a canary, reply on the canary queue, settle it.

Wired into the dispatcher with one call before the handler runs (``leases = await canary.take(leases,
settlement)``): canaries are answered here and never reach the user's handler, and they count only in
``conveyor_processor_canaries_total{result}``, never in the handler's metrics. The reply queue comes
from configuration, never from the message. If the reply cannot be sent, the canary is not deleted:
it comes back after a few seconds (``retry_seconds``) for another try.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter

from conveyor.canary.wire import Canary, Reply, recognise, reply_body
from conveyor.processor.engine.lease import Lease
from conveyor.settings import ProcessorSettings
from conveyor.sqs.errors import SQS_ERRORS, SqsError, classify
from conveyor.sqs.queues import canary_name, canary_queue_url, queue_name_of

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.canary")


class Settler(Protocol):
    """What the responder needs of the settlement: start, then end an answered canary or give an
    unanswered one back later."""

    def start(self, lease: Lease) -> None: ...

    def canary_answered(self, lease: Lease) -> None: ...

    def canary_unanswered(self, lease: Lease, seconds: int) -> None: ...


def default_processor_id() -> str:
    """``hostname:pid``, used when CONVEYOR_PROCESSOR_ID is not set."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    secret: bytes
    reply_queue_url: str
    processor_id: str
    retry_seconds: int = 5  # a canary whose reply failed comes back after this long


class CanaryResponder:
    def __init__(
        self,
        client: SQSClient,
        config: CanaryConfig,
        registry: CollectorRegistry,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._config = config
        self._wall_clock = wall_clock
        self._clock = clock
        self.canaries = Counter(
            "conveyor_processor_canaries",
            "Canary messages recognised (never handed to the handler), by result: answered, reply_failed.",
            ["result"],
            registry=registry,
        )

    async def take(self, leases: list[Lease], settler: Settler) -> list[Lease]:
        """Answer and settle the canaries among ``leases``; return the others, for the handler."""
        rest: list[Lease] = []
        for lease in leases:
            canary = recognise(lease.body, self._config.secret, int(self._wall_clock() * 1000))
            if canary is None:
                rest.append(lease)
            else:
                await self._answer(lease, canary, settler)
        return rest

    async def _answer(self, lease: Lease, canary: Canary, settler: Settler) -> None:
        settler.start(lease)  # held (and released on shutdown) like a message being handled
        handled_at = _ms(self._wall_clock())
        reply = Reply(canary.id, self._config.processor_id, lease.message_id, self._received_at(lease), handled_at)
        try:
            await self._client.send_message(
                QueueUrl=self._config.reply_queue_url, MessageBody=reply_body(self._config.secret, reply)
            )
        except SQS_ERRORS as exc:
            failure = classify(exc)
            log.warning("canary_reply_failed", canary_id=canary.id, code=failure.code, error=failure.message)
            self.canaries.labels("reply_failed").inc()
            settler.canary_unanswered(lease, self._config.retry_seconds)
            return
        log.info("canary_answered", canary_id=canary.id, message_id=lease.message_id)
        self.canaries.labels("answered").inc()
        settler.canary_answered(lease)

    def _received_at(self, lease: Lease) -> int:
        """SQS's first-receive time (ms) when it reports it, else when this process's receive began."""
        first = lease.system.get("ApproximateFirstReceiveTimestamp", "")
        if first.isdigit():
            return int(first)
        return _ms(self._wall_clock() - max(0.0, self._clock() - lease.received_at))


async def responder_for(
    client: SQSClient, settings: ProcessorSettings, registry: CollectorRegistry
) -> CanaryResponder | None:
    """The responder when CONVEYOR_CANARY_SECRET is set, else None. The canary queue must exist:
    a processor that could not reply would leave every canary unanswered."""
    if settings.canary_secret is None:
        return None
    try:
        url = await canary_queue_url(client, settings)
    except SQS_ERRORS as exc:
        failure = classify(exc)
        detail = f"canary queue {canary_name(queue_name_of(settings))}: {failure.message}"
        detail += " (CONVEYOR_CANARY_SECRET is set; `conveyor queues create` creates the canary queue)"
        raise SqsError(replace(failure, message=detail)) from exc
    processor_id = settings.processor_id or default_processor_id()
    log.info("canary_replies_enabled", reply_queue=url, processor_id=processor_id)
    config = CanaryConfig(settings.canary_secret.get_secret_value().encode(), url, processor_id)
    return CanaryResponder(client, config, registry)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
