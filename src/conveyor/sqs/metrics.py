"""The call counters both services export: ``conveyor_sqs_requests_total{operation,outcome}``, and
for payloads through S3 ``conveyor_s3_requests_total{operation,outcome}``, ``conveyor_payloads_total{event}``
and ``conveyor_payload_bytes_total{direction}``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class SqsCallMetrics:
    """Counts every SQS API call by operation and outcome ("ok" or the error code); fed by the SQS
    client's event hooks (``sqs_client(settings, metrics.observe_sqs_call)``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sqs_calls = Counter(
            "conveyor_sqs_requests",
            "SQS API calls by operation and outcome (ok or the error code).",
            ["operation", "outcome"],
            registry=registry,
        )

        self.s3_calls = Counter(
            "conveyor_s3_requests",
            "S3 API calls for payloads by operation and outcome (ok or the error code).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.payloads = Counter(
            "conveyor_payloads",
            "Payloads through S3 by event: stored (writer); fetched, missing, deleted, delete_failed (processor).",
            ["event"],
            registry=registry,
        )
        self.payload_bytes = Counter(
            "conveyor_payload_bytes",
            "Bytes of payloads stored in S3 (writer) or fetched from it (processor).",
            ["direction"],
            registry=registry,
        )

    def observe_sqs_call(self, operation: str, outcome: str) -> None:
        self.sqs_calls.labels(operation, outcome).inc()

    def observe_s3_call(self, operation: str, outcome: str) -> None:
        self.s3_calls.labels(operation, outcome).inc()

    def payload_stored(self, size: int) -> None:
        self.payloads.labels("stored").inc()
        self.payload_bytes.labels("stored").inc(size)
