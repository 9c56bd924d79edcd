"""Configuration from environment variables (prefix ``CONVEYOR_``), validated at start-up.

One class per service; both share :class:`SqsSettings`. A wrong value fails at start-up with one
readable line per problem (see :func:`describe_errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.idempotency.url import parse_store_url
from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS

Port = Annotated[int, Field(ge=1, le=65535)]
MIN_SECRET_CHARS = 16


def _long_enough(secret: SecretStr) -> SecretStr:
    if len(secret.get_secret_value()) < MIN_SECRET_CHARS:
        raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
    return secret


CanarySecret = Annotated[SecretStr, AfterValidator(_long_enough)]
"""CONVEYOR_CANARY_SECRET: shared by the processors and `conveyor canary`; never logged."""


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


class IdempotencySettings(BaseSettings):
    """The idempotency store both services share (unset: the feature is off). See docs/idempotency.md."""

    # The store URL may carry a password: pydantic would repeat it in a validation error's text (the
    # input of a field that failed) and in the settings' repr.
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", frozen=True, hide_input_in_errors=True)

    idempotency_store: str | None = Field(default=None, repr=False)
    idempotency_ttl_seconds: Annotated[int, Field(ge=1, le=30 * 86_400)] = 86_400

    @field_validator("idempotency_store")
    @classmethod
    def _store_url(cls, url: str | None) -> str | None:
        if url is not None:
            parse_store_url(url)  # a StoreUrlError (a ValueError) names the problem in one line
        return url


class AppSettings(BaseSettings):
    """The user's message types (a ``conveyor.App``), loaded by both services."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", frozen=True)

    app: Annotated[str, Field(min_length=1)] | None = None  # package.module:app, imported from the current folder


class WriterSettings(SqsSettings, IdempotencySettings, AppSettings):
    """queue-writer: the HTTP API that puts messages on the queue."""

    sqs_read_timeout_seconds: Annotated[float, Field(gt=0, le=120)] | None = 5.0

    writer_host: str = "127.0.0.1"
    writer_port: Port = 8000
    writer_workers: Annotated[int, Field(ge=1, le=64)] = 1
    max_request_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 2 * 1024 * 1024
    batch_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0
    writer_fast_path: bool = True  # the valid POST /messages answered by the edge (writer/http/fast_path.py)
    send_retries: Annotated[int, Field(ge=0, le=10)] = 2
    ready_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0
    retry_after_seconds: Annotated[int, Field(ge=1, le=3600)] = 2


class ProcessorSettings(SqsSettings, IdempotencySettings, AppSettings):
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
    canary_secret: CanarySecret | None = None  # set: answer canaries (see docs/canary.md)
    processor_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None  # default hostname:pid

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        read_timeout = self.sqs_read_timeout_seconds
        if read_timeout is not None and read_timeout <= self.wait_time_seconds:
            raise ValueError("CONVEYOR_SQS_READ_TIMEOUT_SECONDS must exceed CONVEYOR_WAIT_TIME_SECONDS")
        if self.retry_base_seconds > self.retry_max_seconds:
            raise ValueError("CONVEYOR_RETRY_BASE_SECONDS must not exceed CONVEYOR_RETRY_MAX_SECONDS")
        if self.app is not None and "handler" in self.model_fields_set:
            raise ValueError("set CONVEYOR_APP (an app of typed handlers) or CONVEYOR_HANDLER (one handler), not both")
        return self


class CanarySettings(SqsSettings):
    """`conveyor canary`: where to post (flags win over these) and the secret the processors share."""

    canary_secret: CanarySecret | None = None
    canary_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    canary_api_key: SecretStr | None = None


class DevSettings(SqsSettings):
    """`conveyor dev` and the LocalStack wrapper."""

    localstack_port: Port = 4566
    localstack_python: Path | None = None  # unset: installed under CONVEYOR_HOME on first use
    home: Path | None = None  # unset: $XDG_CACHE_HOME/conveyor or ~/.cache/conveyor
    localstack_gateway_server: Literal["hypercorn", "twisted"] = "hypercorn"
    state_dir: Path = Path(".conveyor")
    writer_host: str = "127.0.0.1"
    writer_port: Port = 8000
    processor_port: Port = 8001
    canary_secret: CanarySecret | None = None  # unset: `conveyor dev` makes one up for its children


def describe_errors(error: ValidationError) -> list[str]:
    """One readable line per invalid setting, naming the environment variable."""
    lines = []
    for item in error.errors():
        loc = "_".join(str(part) for part in item["loc"])
        name = f"CONVEYOR_{loc.upper()}" if loc else "settings"
        lines.append(f"invalid setting {name}: {item['msg']}")
    return lines
