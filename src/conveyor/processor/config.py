"""The engine's configuration: plain values, built from settings and the queue's attributes.

Kept apart from the pydantic settings so that tests can run the engine with sub-second timings. The
settings' defaults live in one place, :class:`~conveyor.settings.ProcessorSettings`: the fields that
come from settings have no default here; the ones with a default are the engine's own constants or
facts read from the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.settings import ProcessorSettings
from conveyor.sqs.limits import MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES
from conveyor.sqs.queues import QueueConfig


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When the breaker opens (see :mod:`conveyor.processor.engine.flow.breaker`)."""

    min_calls: int = 20
    failure_ratio: float = 0.5
    window: float = 10.0
    pause: float = 5.0
    probes: int = 2
    retry_seconds: int = 60  # a message failing while it is open comes back no sooner than this


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Flow control (see :mod:`conveyor.processor.engine.flow`); all off unless built from settings."""

    rate_per_second: float | None = None
    rate_store: str | None = field(default=None, repr=False)  # a redis URL: may carry a password
    rate_key: str = ""
    adaptive: bool = False
    latency_tolerance: float = 2.0
    breaker: BreakerPolicy | None = None

    @classmethod
    def build(cls, settings: ProcessorSettings, queue_name: str) -> FlowConfig:
        # At least one round of calls: the first results of a round are the fast ones, and fast
        # failures would open it while the round's slower successes are still running.
        breaker = BreakerPolicy(
            min_calls=max(settings.breaker_min_calls, settings.concurrency),
            failure_ratio=settings.breaker_failure_ratio,
            window=settings.breaker_window_seconds, pause=settings.breaker_pause_seconds,
            probes=settings.breaker_probes, retry_seconds=settings.breaker_retry_seconds,
        )  # fmt: skip
        return cls(
            rate_per_second=settings.rate_limit_per_second,
            rate_store=settings.rate_limit_store,
            rate_key=settings.rate_limit_key or queue_name,
            adaptive=settings.adaptive_concurrency,
            latency_tolerance=settings.adaptive_latency_tolerance,
            breaker=breaker if settings.breaker else None,
        )


@dataclass(frozen=True, slots=True)
class EngineConfig:
    queue_url: str
    dlq_url: str | None
    concurrency: int
    prefetch: int
    pollers: int
    wait_time_seconds: int
    visibility_timeout: float
    retry_base_seconds: float
    retry_max_seconds: float
    delete_linger: float  # deletes and visibility changes: the batch window when one is set
    shutdown_grace: float
    poll_error_backoff_max: float
    max_receive_count: int | None = None  # from the queue's redrive policy
    fifo: bool = False  # a FIFO queue (and so a FIFO DLQ): order per message group
    dlq_max_message_bytes: int = MAX_MESSAGE_BYTES  # the dead-letter queue's own MaximumMessageSize
    poll_drain_seconds: float = 1.0  # on shutdown, how long a receive under way may take to answer
    entry_retries: int = 2  # resends of batch entries SQS failed for a retryable reason
    flow: FlowConfig = FlowConfig()  # rate limit, adaptive concurrency, breaker: off unless set
    batch_window: float = 0.0  # a sparse queue's receives this far apart (0: each as soon as slots are free)
    payload_delete: bool = True  # a handled message's S3 payload object is deleted after the message
    payload_buckets: frozenset[str] | None = None  # the buckets pointers may name (None: any)
    payload_own: tuple[str, str] | None = None  # (bucket, prefix) of the objects it may delete (None: any)

    @property
    def capacity(self) -> int:
        """Messages held at most before their handler finishes: running plus prefetched.

        On a FIFO queue a receive brings up to ten messages of one group, handled one after another:
        to keep ``concurrency`` groups running, the processor holds up to ten per worker."""
        if self.fifo:
            return self.concurrency * MAX_BATCH_ENTRIES + self.prefetch
        return self.concurrency + self.prefetch

    def capacity_at(self, concurrency: int) -> int:
        """:attr:`capacity` while adaptive concurrency lets ``concurrency`` handlers run."""
        per_worker = MAX_BATCH_ENTRIES if self.fifo else 1
        return concurrency * per_worker + self.prefetch

    @classmethod
    def build(cls, settings: ProcessorSettings, queue: QueueConfig, dlq: QueueConfig | None) -> EngineConfig:
        return cls(
            queue_url=queue.url,
            dlq_url=dlq.url if dlq else None,
            concurrency=settings.concurrency,
            prefetch=settings.prefetch,
            pollers=settings.pollers,
            wait_time_seconds=settings.wait_time_seconds,
            visibility_timeout=settings.visibility_timeout_seconds,
            retry_base_seconds=settings.retry_base_seconds,
            retry_max_seconds=settings.retry_max_seconds,
            delete_linger=(settings.batch_window_ms or settings.delete_linger_ms) / 1000,
            shutdown_grace=settings.shutdown_grace_seconds,
            poll_error_backoff_max=settings.poll_error_backoff_max_seconds,
            max_receive_count=queue.max_receive_count,
            fifo=queue.is_fifo,
            dlq_max_message_bytes=dlq.max_message_bytes if dlq else MAX_MESSAGE_BYTES,
            flow=FlowConfig.build(settings, queue.name),
            batch_window=settings.batch_window_ms / 1000,
            # without a bucket of its own it deletes nothing: the objects are other producers'
            payload_delete=settings.payload_delete and settings.payload_bucket is not None,
            payload_buckets=settings.readable_buckets,
            payload_own=(settings.payload_bucket, settings.payload_prefix) if settings.payload_bucket else None,
        )
