"""Configuration from environment variables (prefix ``CONVEYOR_``), validated at start-up.

One class per service; both share :class:`SqsSettings`. A wrong value fails at start-up with one
readable line per problem (see :func:`describe_errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.idempotency.url import RedisLocation, parse_store_url
from conveyor.payloads.settings import PayloadSettings
from conveyor.settings_mirror import MirrorSettings
from conveyor.sqs.limits import MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS

Port = Annotated[int, Field(ge=1, le=65535)]
MIN_SECRET_CHARS = 16
MAX_BATCH_WINDOW_MS = 1000  # a heartbeat extends at half the visibility (5 s at least) left: a late extension makes it
COMMON = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", frozen=True, use_attribute_docstrings=True)


def _long_enough(secret: SecretStr) -> SecretStr:
    if len(secret.get_secret_value()) < MIN_SECRET_CHARS:
        raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
    return secret


CanarySecret = Annotated[SecretStr, AfterValidator(_long_enough)]
"""CONVEYOR_CANARY_SECRET: shared by the processors and `conveyor canary`; never logged."""


class SqsSettings(BaseSettings):
    """Where the queue is and how the SQS client behaves."""

    model_config = SettingsConfigDict(**COMMON)

    queue_name: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_-]+(\.fifo)?$")] = (
        "conveyor-messages"
    )
    """the queue (its DLQ is `<name>-dlq`, its canary queue `<name>-canary`)"""
    queue_url: AnyHttpUrl | None = None
    """the queue by URL (wins over the name)"""
    sqs_endpoint_url: AnyHttpUrl | None = None
    """a local SQS such as LocalStack; unset: real AWS"""
    aws_region: str | None = None
    """the region; unset: `AWS_REGION` or the profile's (`us-east-1` with an endpoint)"""
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = 5
    """the redrive policy's `maxReceiveCount`, for `conveyor queues create` and `conveyor dev`"""
    sqs_max_pool_connections: Annotated[int, Field(ge=1, le=1000)] = 64
    """aiobotocore connection pool (its default of 10 caps concurrency)"""
    sqs_retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    """botocore retry mode"""
    sqs_max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    """botocore attempts per call"""
    sqs_connect_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0
    """connect timeout"""
    sqs_read_timeout_seconds: Annotated[float, Field(gt=0, le=120)] | None = None
    """read timeout per SQS call; unset: the client's 30 s (the processor's must exceed the long poll)"""
    log_format: Literal["auto", "json", "console"] = "auto"
    """`json`, `console`, or `auto` (console on a terminal)"""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """`debug`, `info`, `warning`, `error`"""

    @property
    def endpoint(self) -> str | None:
        """The SQS endpoint as a string, or None for real AWS."""
        return str(self.sqs_endpoint_url).rstrip("/") if self.sqs_endpoint_url else None


class IdempotencySettings(BaseSettings):
    """The idempotency store both services share (unset: the feature is off). See docs/idempotency.md."""

    # The store URL may carry a password: pydantic would repeat it in a validation error's text (the
    # input of a field that failed) and in the settings' repr.
    model_config = SettingsConfigDict(
        env_prefix="CONVEYOR_", extra="ignore", frozen=True, hide_input_in_errors=True, use_attribute_docstrings=True
    )

    idempotency_store: str | None = Field(default=None, repr=False)
    """the idempotency store: `sqlite:///path/to/file` (one host) or `redis://host:port/db` (many hosts); unset: off
    ([Effectively once](idempotency.md))"""
    idempotency_ttl_seconds: Annotated[int, Field(ge=1, le=30 * 86_400)] = 86_400
    """how long a completed key and a remembered response are kept (1 s to 30 days)"""

    @field_validator("idempotency_store")
    @classmethod
    def _store_url(cls, url: str | None) -> str | None:
        if url is not None:
            parse_store_url(url)  # a StoreUrlError (a ValueError) names the problem in one line
        return url


class AppSettings(BaseSettings):
    """The user's message types (a ``conveyor.App``), loaded by both services."""

    model_config = SettingsConfigDict(**COMMON)

    app: Annotated[str, Field(min_length=1)] | None = None  # package.module:app, imported from the current folder
    """your `conveyor.App` of typed handlers, `package.module:app`, imported from the current folder: the writer
    validates each body against its type's model, the processor routes by type (not with `CONVEYOR_HANDLER`)"""


class BatchWindowSettings(BaseSettings):
    """The trade of latency for SQS cost, read by both services (see docs/cost.md)."""

    model_config = SettingsConfigDict(**COMMON)

    batch_window_ms: Annotated[float, Field(ge=0, le=MAX_BATCH_WINDOW_MS)] = 0.0
    """the longest a message may wait to share an SQS request with others: the writer holds it for a SendMessageBatch
    (sent at ten or at the bytes limit), the processor spaces a sparse queue's receives and lingers its deletes and
    visibility changes that long (instead of `CONVEYOR_DELETE_LINGER_MS`); 0: latency first ([Cost](cost.md))"""


class WriterSettings(
    SqsSettings, IdempotencySettings, AppSettings, BatchWindowSettings, PayloadSettings, MirrorSettings
):
    """queue-writer: the HTTP API that puts messages on the queue."""

    sqs_read_timeout_seconds: Annotated[float, Field(gt=0, le=120)] | None = 5.0
    """read timeout per SQS call; unset: the client's 30 s (the processor's must exceed the long poll)"""

    writer_host: str = "127.0.0.1"
    """the address the writer's API listens on"""
    writer_port: Port = 8000
    """the port the writer's API listens on"""
    writer_workers: Annotated[int, Field(ge=1, le=64)] = 1
    """uvicorn worker processes (one `/metrics` for all)"""
    max_request_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 2 * 1024 * 1024
    """HTTP body limit (413 above)"""
    batch_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0
    """the shortest stall guard: while other calls are in flight a message waits for ten or for their end, at most
    twice the usual call time, never less than this nor more than 1 s unless this is longer (with none in flight a
    message goes at once)"""
    writer_fast_path: bool = True  # the valid POST /messages answered by the edge (writer/http/fast_path.py)
    """answer a valid `POST /messages` without FastAPI's routing (same answers, less CPU; `false` sends every request
    through the FastAPI route)"""
    send_retries: Annotated[int, Field(ge=0, le=10)] = 2
    """resends of entries SQS failed for a retryable reason"""
    ready_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0
    """how long a good `/readyz` check is reused"""
    retry_after_seconds: Annotated[int, Field(ge=1, le=3600)] = 2
    """`Retry-After` on 503"""

    @property
    def send_eagerly(self) -> bool:
        """No window: a lone message goes at once, under load calls fill while others fly (eager batching)."""
        return not self.batch_window_ms

    @property
    def send_linger_seconds(self) -> float:
        """The batcher's linger: the window, or without one the eager mode's shortest stall guard."""
        return (self.batch_window_ms or self.batch_linger_ms) / 1000


class ProcessorSettings(SqsSettings, IdempotencySettings, AppSettings, BatchWindowSettings, PayloadSettings):
    """queue-processor: the consumer that runs the handler on every message."""

    handler: str = "conveyor.handlers:demo"
    """one untyped handler, `package.module:function`, imported from the current folder"""
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 50
    """handlers running at once"""
    prefetch: Annotated[int, Field(ge=10, le=10_000)] = 10
    """messages held beyond the concurrency (at least 10)"""
    pollers: Annotated[int, Field(ge=1, le=64)] = 2
    """concurrent long polls"""
    wait_time_seconds: Annotated[int, Field(ge=0, le=MAX_WAIT_SECONDS)] = 20
    """long poll wait (0 to 20)"""
    visibility_timeout_seconds: Annotated[int, Field(ge=5, le=MAX_VISIBILITY_SECONDS)] = 30
    """visibility per receive; the heartbeat extends it"""
    retry_base_seconds: Annotated[float, Field(ge=0, le=3600)] = 1.0
    """backoff after a handler's failure: this x 2^(receives-1), capped by CONVEYOR_RETRY_MAX_SECONDS, with equal
    jitter"""
    retry_max_seconds: Annotated[float, Field(ge=0, le=MAX_VISIBILITY_SECONDS)] = 300.0
    """the backoff's cap"""
    delete_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 20.0
    """longest wait before a DeleteMessageBatch / ChangeMessageVisibilityBatch (the batch window instead, if set)"""
    # With the 1 s poll drain and the final flush, a stop ends within about grace + 5 s: inside the
    # 30 s that Kubernetes (terminationGracePeriodSeconds) and ECS (stopTimeout) give by default.
    shutdown_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 20.0
    """time running handlers get on SIGTERM (a stop then ends within about grace + 5 s: inside the usual 30 s of
    Kubernetes and ECS)"""
    poll_error_backoff_max_seconds: Annotated[float, Field(gt=0, le=300)] = 20.0
    """cap of the backoff after failed polls"""
    processor_host: str = "127.0.0.1"
    """the address of the processor's ops HTTP port (/healthz, /readyz, /metrics)"""
    processor_port: Port = 8001
    """the processor's ops HTTP port (/healthz, /readyz, /metrics)"""
    processes: Annotated[int, Field(ge=1, le=64)] = 1
    """engine processes under one supervisor (for CPU-bound handlers; see [Deploying](deployment.md))"""
    demo_work_seconds: Annotated[float, Field(ge=0, le=3600)] = 0.1
    """the demo handler's simulated work per message"""
    canary_secret: CanarySecret | None = None  # set: answer canaries (see docs/canary.md)
    """shared secret (16+ characters) of canary signatures; set on the processor, it answers canaries ([the
    canary](canary.md)); never logged"""
    processor_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None  # default hostname:pid
    """the name a canary reply carries; unset: `hostname:pid`"""
    rate_limit_per_second: Annotated[float, Field(gt=0, le=100_000)] | None = None
    """at most this many handler starts per second per process (a burst of at most one second's worth); it gates
    the receive, so no message waits for its turn once received; unset: no limit ([Flow control](flow-control.md))"""
    rate_limit_store: str | None = Field(default=None, repr=False)
    """`redis://host:port/db`: one rate limit shared by every processor naming the same key (while Redis is out of
    reach, each process applies the limit alone); unset: per process"""
    rate_limit_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """the shared limit's name in the store; unset: the queue's name (processors of other queues that share a
    downstream may name the same key)"""
    adaptive_concurrency: bool = True
    """follow the downstream: between 1 and `CONVEYOR_CONCURRENCY`, fewer handlers run at once after a `Throttle`
    or a rise in handler latency, more while calls succeed at a steady latency; `false`: always the concurrency"""
    adaptive_latency_tolerance: Annotated[float, Field(ge=1.1, le=100)] = 2.0
    """a second whose mean handler latency exceeds this many times the lowest of the last 30 s shrinks the
    concurrency"""
    breaker: bool = True
    """stop taking messages while most handler calls fail (a downstream down), probe, and resume once probes
    succeed; `false`: never"""
    breaker_min_calls: Annotated[int, Field(ge=1, le=100_000)] = 20
    """calls in the window before the breaker may open (and at least `CONVEYOR_CONCURRENCY`: the first results of a
    round are its fast failures, its successes come later)"""
    breaker_failure_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    """the share of failed calls in the window that opens the breaker"""
    breaker_window_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    """the breaker's sliding window"""
    breaker_pause_seconds: Annotated[float, Field(ge=0.1, le=3600)] = 5.0
    """how long the open breaker takes no message before it lets probes through"""
    breaker_probes: Annotated[int, Field(ge=1, le=10)] = 2
    """messages let through to test the downstream after each pause"""
    breaker_retry_seconds: Annotated[int, Field(ge=0, le=MAX_VISIBILITY_SECONDS)] = 60
    """while the breaker is open, a message whose handler failed comes back no sooner than this, so that the
    probes do not spend the same messages' receives again and again"""

    @field_validator("rate_limit_store")
    @classmethod
    def _rate_store_url(cls, url: str | None) -> str | None:
        if url is not None and not isinstance(parse_store_url(url), RedisLocation):
            raise ValueError("the rate limit's store is redis://host:port/db (or rediss://)")
        return url

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        read_timeout = self.sqs_read_timeout_seconds
        if read_timeout is not None and read_timeout <= self.wait_time_seconds:
            raise ValueError("CONVEYOR_SQS_READ_TIMEOUT_SECONDS must exceed CONVEYOR_WAIT_TIME_SECONDS")
        if self.retry_base_seconds > self.retry_max_seconds:
            raise ValueError("CONVEYOR_RETRY_BASE_SECONDS must not exceed CONVEYOR_RETRY_MAX_SECONDS")
        if self.rate_limit_store is not None and self.rate_limit_per_second is None:
            raise ValueError("CONVEYOR_RATE_LIMIT_STORE needs CONVEYOR_RATE_LIMIT_PER_SECOND (the limit to share)")
        if self.app is not None and "handler" in self.model_fields_set:
            raise ValueError("set CONVEYOR_APP (an app of typed handlers) or CONVEYOR_HANDLER (one handler), not both")
        return self


class CanarySettings(SqsSettings):
    """`conveyor canary`: where to post (flags win over these) and the secret the processors share."""

    canary_secret: CanarySecret | None = None
    """shared secret (16+ characters) of canary signatures; set on the processor, it answers canaries ([the
    canary](canary.md)); never logged"""
    canary_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    """the public API's base URL when `--url` is not given"""
    canary_api_key: SecretStr | None = None
    """sent as `X-Api-Key` when `--api-key` is not given"""


class DevSettings(SqsSettings, PayloadSettings):
    """`conveyor dev` and the LocalStack wrapper."""

    localstack_port: Port = 4566
    """LocalStack's port"""
    localstack_python: Path | None = None  # unset: installed under CONVEYOR_HOME on first use
    """LocalStack's interpreter; unset, `conveyor dev` installs the embedded LocalStack under `CONVEYOR_HOME` on its
    first run (a few minutes, with a progress line) and reuses it; `make run` and the tests set
    `.venv-localstack/bin/python`"""
    home: Path | None = None  # unset: $XDG_CACHE_HOME/conveyor or ~/.cache/conveyor
    """where `conveyor dev` keeps what it installs: `$XDG_CACHE_HOME/conveyor`, else `~/.cache/conveyor`"""
    localstack_gateway_server: Literal["hypercorn", "twisted"] = "hypercorn"
    """`hypercorn` keeps to 127.0.0.1; `twisted` is faster but listens on 0.0.0.0"""
    state_dir: Path = Path(".conveyor")
    """`conveyor dev`'s state: LocalStack's files and log, and its SQLite idempotency store"""
    writer_host: str = "127.0.0.1"
    """the address the writer's API listens on"""
    writer_port: Port = 8000
    """the port the writer's API listens on"""
    processor_port: Port = 8001
    """the processor's ops HTTP port (/healthz, /readyz, /metrics)"""
    canary_secret: CanarySecret | None = None  # unset: `conveyor dev` makes one up for its children
    """shared secret (16+ characters) of canary signatures; set on the processor, it answers canaries ([the
    canary](canary.md)); never logged"""


def describe_errors(error: ValidationError) -> list[str]:
    """One readable line per invalid setting, naming the environment variable."""
    lines = []
    for item in error.errors():
        loc = "_".join(str(part) for part in item["loc"])
        name = f"CONVEYOR_{loc.upper()}" if loc else "settings"
        lines.append(f"invalid setting {name}: {item['msg']}")
    return lines
