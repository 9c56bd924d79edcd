"""The writer's Prometheus metrics, in a registry of its own (one per app).

With ``CONVEYOR_WRITER_WORKERS`` above 1 every worker also writes them to a directory the server
owns (prometheus-client's multiprocess mode, :mod:`conveyor.metrics_dir`) and ``/metrics`` adds up
all the workers; with one worker the mode is unused.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from conveyor.sqs.metrics import SqsCallMetrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series: noise for counters

BYTES_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class WriterMetrics(SqsCallMetrics):
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        super().__init__(self.registry)
        self.requests = Counter(
            "conveyor_writer_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "conveyor_writer_requests_in_progress",
            "HTTP requests being handled now, by route (those waiting for their batch included).",
            ["route"],
            registry=self.registry,
            multiprocess_mode="livesum",  # with several workers: summed over the live ones
        )
        self.batch_entries = Histogram(
            "conveyor_writer_batch_entries",
            "Entries per SendMessageBatch call.",
            buckets=tuple(range(1, 11)),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "conveyor_writer_batch_seconds",
            "Time of one coalesced SendMessageBatch: from its call to the last entry's answer (resends included).",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.batch_wait = Histogram(
            "conveyor_writer_batch_wait_seconds",
            "Time a message waited for its batch call to be answered (linger plus the call).",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.message_bytes = Histogram(
            "conveyor_writer_message_bytes",
            "Size of accepted messages as SQS counts it (body plus attributes).",
            buckets=BYTES_BUCKETS,
            registry=self.registry,
        )
        self.messages = Counter(
            "conveyor_writer_messages",
            "Messages by result: accepted by SQS, or refused with an HTTP status.",
            ["result"],
            registry=self.registry,
        )

        self.mirror = Counter(
            "conveyor_writer_mirror",
            "Copies of accepted messages for the mirror queue, by outcome: sent, dropped (buffer full, no attribute "
            "slot, stopping) or failed (the mirror queue refused or failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.idempotency = Counter(
            "conveyor_writer_idempotency_keys",
            "Requests and batch entries with an idempotency key, by the store's answer: new, replay, mismatch, "
            "in_flight, or store_unavailable.",
            ["result"],
            registry=self.registry,
        )

    def observe_batch(self, entries: int, seconds: float) -> None:
        """The batcher's report of one call: its entries and how long it took."""
        self.batch_entries.observe(entries)
        self.batch_seconds.observe(seconds)
