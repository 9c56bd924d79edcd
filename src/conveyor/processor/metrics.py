"""The processor's Prometheus metrics, in a registry of its own (one per engine).

With ``CONVEYOR_PROCESSES`` above 1 each engine process also writes them to the supervisor's
multiprocess directory (prometheus-client's multiprocess mode, see :mod:`conveyor.metrics_dir`); the
gauges say how to add up the processes ('livesum': over the live ones). In one process the mode is
unused.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from conveyor.message import Retry
from conveyor.sqs.metrics import SqsCallMetrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series: noise for counters

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


MAX_ERROR_TYPES = 20
OTHER_ERROR_TYPE = "other"
MAX_ERROR_TYPE_CHARS = 200


class ErrorTypes:
    """The ``error_type`` label: an error's qualified class name, as the dead-letter record has it.
    Each name is a series of its own: a handler that makes classes on the fly (or a long tail of
    them) must not grow the exposition without bound, so a process labels the first
    :data:`MAX_ERROR_TYPES` it meets and counts the rest as ``other``."""

    def __init__(self, cap: int = MAX_ERROR_TYPES) -> None:
        self._cap = cap
        self._known: set[str] = set()

    def label(self, error: BaseException) -> str:
        kind = type(error)
        name = f"{kind.__module__}.{kind.__qualname__}"[:MAX_ERROR_TYPE_CHARS]
        if name in self._known:
            return name
        if len(self._known) >= self._cap:
            return OTHER_ERROR_TYPE
        self._known.add(name)
        return name


class ProcessorMetrics(SqsCallMetrics):
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        super().__init__(r)
        self.received = Counter("conveyor_processor_received", "Messages received.", registry=r)
        self.succeeded = Counter("conveyor_processor_succeeded", "Handler returned: deleted.", registry=r)
        self.retried = Counter(
            "conveyor_processor_retried", "Handler failed or asked to retry: made visible later.", registry=r
        )
        self.dead_lettered = Counter(
            "conveyor_processor_dead_lettered",
            "Messages sent to the dead-letter queue by the processor, by reason (exhausted, rejected) and"
            f" error_type (the qualified class name; the first {MAX_ERROR_TYPES} a process meets, then other).",
            ["reason", "error_type"],
            registry=r,
        )
        self.failed = Counter(
            "conveyor_processor_failed",
            "Handler calls that ended in an error (retried or dead-lettered; a Retry or Throttle the handler"
            " raised to ask for a later try is not one), by error_type (the qualified class name; the first"
            f" {MAX_ERROR_TYPES} a process meets, then other).",
            ["error_type"],
            registry=r,
        )
        self._error_types = ErrorTypes()
        self.released = Counter(
            "conveyor_processor_released",
            "Messages given back unhandled: never started (at visibility 0), or behind a failed message of"
            " their FIFO group (visible again with it).",
            registry=r,
        )
        self.extended = Counter(
            "conveyor_processor_visibility_extended", "Heartbeat visibility extensions.", registry=r
        )
        self.lost = Counter(
            "conveyor_processor_lease_lost",
            "Deletes or extensions SQS refused (the message may be delivered again).",
            ["operation"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "conveyor_processor_handler_seconds", "Handler duration.", buckets=DURATION_BUCKETS, registry=r
        )
        self.lag_seconds = Histogram(
            "conveyor_processor_queue_lag_seconds",
            "Time from SentTimestamp to receive.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.duplicates_skipped = Counter(
            "conveyor_processor_duplicates_skipped",
            "Messages whose key was completed before: deleted without running the handler.",
            registry=r,
        )
        self.duplicates_deferred = Counter(
            "conveyor_processor_duplicates_deferred",
            "Messages whose key another process is handling now: made visible again later.",
            registry=r,
        )
        self.duplicates_completed = Counter(
            "conveyor_processor_duplicates_completed",
            "Handler completions of a key another process claimed or completed meanwhile (this process's"
            " claim ended while the handler ran, the store out of reach): the handler ran twice for the key.",
            registry=r,
        )
        self.claim_failures = Counter(
            "conveyor_processor_claim_failures",
            "Received batches whose idempotency claims failed, by reason: store_unavailable (tried again"
            " with backoff, the batch held), error (a bug of ours or the store's). Not poll failures.",
            ["reason"],
            registry=r,
        )
        self.throttled = Counter(
            "conveyor_processor_throttled",
            "Handler calls that raised Throttle (the downstream is saturated): retried later, the processor"
            " slowed down.",
            registry=r,
        )
        self.breaker_transitions = Counter(
            "conveyor_processor_breaker_transitions",
            "Breaker state changes, by the state entered: open, half_open, closed.",
            ["to"],
            registry=r,
        )
        self.rate_limit_wait = Counter(
            "conveyor_processor_rate_limit_wait_seconds",
            "Seconds the pollers waited for rate-limit tokens before a receive.",
            registry=r,
        )
        self.rate_limit_store_failures = Counter(
            "conveyor_processor_rate_limit_store_failures",
            "Rate-limit store calls that failed (the limit was applied in the process instead).",
            registry=r,
        )
        self.breaker_state = Gauge(
            "conveyor_processor_breaker_state",
            "The breaker: 0 closed, 1 open (taking no message), 2 half-open (probing); the most over the"
            " live processes.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rate_limit = Gauge(
            "conveyor_processor_rate_limit_per_second",
            "CONVEYOR_RATE_LIMIT_PER_SECOND (0: no limit).",
            registry=r,
            multiprocess_mode="livemax",
        )
        # Summed over the live processes when several run (prometheus-client's multiprocess mode).
        self.in_flight = Gauge(
            "conveyor_processor_in_flight", "Messages held now.", registry=r, multiprocess_mode="livesum"
        )
        self.concurrency_limit = Gauge(
            "conveyor_processor_concurrency_limit",
            "Handlers allowed to run at once now (adaptive concurrency: between 1 and CONVEYOR_CONCURRENCY).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.running = Gauge(
            "conveyor_processor_running", "Handlers running now.", registry=r, multiprocess_mode="livesum"
        )

    def count_retry(self, error: BaseException) -> None:
        """A message tried again later: after an error (counted as failed), or because its handler
        asked for it (``Retry``, ``Throttle``: not a failure)."""
        self.retried.inc()
        if not isinstance(error, Retry):
            self.failed.labels(self._error_types.label(error)).inc()

    def count_dead_letter(self, reason: str, error: BaseException) -> None:
        """A message the processor dead-lettered (its handler's last call failed)."""
        kind = self._error_types.label(error)
        self.dead_lettered.labels(reason, kind).inc()
        self.failed.labels(kind).inc()
