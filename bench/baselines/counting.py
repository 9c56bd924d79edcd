"""Count a boto3 client's SQS API calls exactly as Conveyor counts its own (botocore's
``after-call`` and ``after-call-error`` events: one per API call, whatever its retries), and expose
the counts in Prometheus form under Conveyor's metric names."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

SQS_REQUESTS = Counter("conveyor_sqs_requests", "SQS API calls by operation and outcome", ["operation", "outcome"])
SUCCEEDED = Counter("conveyor_processor_succeeded", "Messages handled and deleted")


def count_calls(client: Any) -> Any:
    """Register the counting hooks on ``client`` (a boto3 SQS client) and return it."""

    def after_call(event_name: str, parsed: Any = None, **_: Any) -> None:
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        SQS_REQUESTS.labels(event_name.rsplit(".", 1)[-1], str(error.get("Code", "error")) if error else "ok").inc()

    def after_call_error(event_name: str, exception: BaseException | None = None, **_: Any) -> None:
        SQS_REQUESTS.labels(event_name.rsplit(".", 1)[-1], type(exception).__name__ if exception else "error").inc()

    client.meta.events.register("after-call.sqs", after_call)
    client.meta.events.register("after-call-error.sqs", after_call_error)
    return client
