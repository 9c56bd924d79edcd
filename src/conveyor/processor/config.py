"""The engine's configuration: plain values, built from settings and the queue's attributes.

Kept apart from the pydantic settings so that tests can run the engine with sub-second timings.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.settings import ProcessorSettings
from conveyor.sqs.queues import QueueConfig


@dataclass(frozen=True, slots=True)
class EngineConfig:
    queue_url: str
    dlq_url: str | None
    concurrency: int = 50
    prefetch: int = 10
    pollers: int = 2
    wait_time_seconds: int = 20
    visibility_timeout: float = 30.0
    max_receive_count: int | None = None
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    delete_linger: float = 0.02
    shutdown_grace: float = 30.0
    poll_drain_seconds: float = 1.0  # on shutdown, how long a receive under way may take to answer
    poll_error_backoff_max: float = 20.0
    entry_retries: int = 2
    dlq_is_fifo: bool = False
    dlq_max_message_bytes: int = 1_048_576  # the dead-letter queue's own MaximumMessageSize

    @property
    def capacity(self) -> int:
        """Messages held at most before their handler finishes: running plus prefetched."""
        return self.concurrency + self.prefetch

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
            max_receive_count=queue.max_receive_count,
            retry_base_seconds=settings.retry_base_seconds,
            retry_max_seconds=settings.retry_max_seconds,
            delete_linger=settings.delete_linger_ms / 1000,
            shutdown_grace=settings.shutdown_grace_seconds,
            poll_error_backoff_max=settings.poll_error_backoff_max_seconds,
            dlq_is_fifo=queue.is_fifo,
            dlq_max_message_bytes=dlq.max_message_bytes if dlq else queue.max_message_bytes,
        )
