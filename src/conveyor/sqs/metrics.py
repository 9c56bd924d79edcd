"""The SQS call counter both services export: ``conveyor_sqs_requests_total{operation,outcome}``."""

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

    def observe_sqs_call(self, operation: str, outcome: str) -> None:
        self.sqs_calls.labels(operation, outcome).inc()
