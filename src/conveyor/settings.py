"""Configuration from environment variables (prefix ``CONVEYOR_``), validated at start-up.

One class per service; both share :class:`SqsSettings`. A wrong value fails at start-up with one
readable line per problem (see :func:`describe_errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AnyHttpUrl, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS

Port = Annotated[int, Field(ge=1, le=65535)]


class SqsSettings(BaseSettings):
    """Where the queue is and how the SQS client behaves."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", frozen=True)

    queue_name: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_-]+(\.fifo)?$")] = (
        "conveyor-messages"
    )
    queue_url: AnyHttpUrl | None = None
    sqs_endpoint_url: AnyHttpUrl | None = None
    aws_region: str | None = None
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = 5
    sqs_max_pool_connections: Annotated[int, Field(ge=1, le=1000)] = 64
    sqs_retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    sqs_max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    sqs_connect_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0
    sqs_read_timeout_seconds: Annotated[float, Field(gt=0, le=120)] | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def endpoint(self) -> str | None:
        """The SQS endpoint as a string, or None for real AWS."""
        return str(self.sqs_endpoint_url).rstrip("/") if self.sqs_endpoint_url else None


class WriterSettings(SqsSettings):
    """queue-writer: the HTTP API that puts messages on the queue."""

    sqs_read_timeout_seconds: Annotated[float, Field(gt=0, le=120)] | None = 5.0

    writer_host: str = "127.0.0.1"
    writer_port: Port = 8000
    writer_workers: Annotated[int, Field(ge=1, le=64)] = 1
    max_request_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 2 * 1024 * 1024
    batch_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0
    send_retries: Annotated[int, Field(ge=0, le=10)] = 2
    ready_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0
    retry_after_seconds: Annotated[int, Field(ge=1, le=3600)] = 2


class ProcessorSettings(SqsSettings):
    """queue-processor: the consumer that runs the handler on every message."""

    handler: str = "conveyor.handlers:demo"
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 50
    prefetch: Annotated[int, Field(ge=10, le=10_000)] = 10
    pollers: Annotated[int, Field(ge=1, le=64)] = 2
    wait_time_seconds: Annotated[int, Field(ge=0, le=MAX_WAIT_SECONDS)] = 20
    visibility_timeout_seconds: Annotated[int, Field(ge=5, le=MAX_VISIBILITY_SECONDS)] = 30
    retry_base_seconds: Annotated[float, Field(ge=0, le=3600)] = 1.0
    retry_max_seconds: Annotated[float, Field(ge=0, le=MAX_VISIBILITY_SECONDS)] = 300.0
    delete_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 20.0
    # With the 1 s poll drain and the final flush, a stop ends within about grace + 5 s: inside the
    # 30 s that Kubernetes (terminationGracePeriodSeconds) and ECS (stopTimeout) give by default.
    shutdown_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 20.0
    poll_error_backoff_max_seconds: Annotated[float, Field(gt=0, le=300)] = 20.0
    processor_host: str = "127.0.0.1"
    processor_port: Port = 8001
    processes: Annotated[int, Field(ge=1, le=64)] = 1
    demo_work_seconds: Annotated[float, Field(ge=0, le=3600)] = 0.1

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        read_timeout = self.sqs_read_timeout_seconds
        if read_timeout is not None and read_timeout <= self.wait_time_seconds:
            raise ValueError("CONVEYOR_SQS_READ_TIMEOUT_SECONDS must exceed CONVEYOR_WAIT_TIME_SECONDS")
        if self.retry_base_seconds > self.retry_max_seconds:
            raise ValueError("CONVEYOR_RETRY_BASE_SECONDS must not exceed CONVEYOR_RETRY_MAX_SECONDS")
        return self


class DevSettings(SqsSettings):
    """`conveyor dev` and the LocalStack wrapper."""

    localstack_port: Port = 4566
    localstack_python: Path = Path(".venv-localstack/bin/python")
    localstack_gateway_server: Literal["hypercorn", "twisted"] = "hypercorn"
    state_dir: Path = Path(".conveyor")
    writer_host: str = "127.0.0.1"
    writer_port: Port = 8000
    processor_port: Port = 8001


def describe_errors(error: ValidationError) -> list[str]:
    """One readable line per invalid setting, naming the environment variable."""
    lines = []
    for item in error.errors():
        loc = "_".join(str(part) for part in item["loc"])
        name = f"CONVEYOR_{loc.upper()}" if loc else "settings"
        lines.append(f"invalid setting {name}: {item['msg']}")
    return lines
