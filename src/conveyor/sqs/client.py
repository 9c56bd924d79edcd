"""The aiobotocore SQS client factory: one client per process, entered for the app's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.context import get_context

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

# Long polls last up to 20 s: the default read timeout outlives them. The writer never long-polls
# and uses a short one, so that a hung SQS becomes a 503 in seconds (see WriterSettings).
READ_TIMEOUT_SECONDS = 30.0
LOCAL_DUMMY_CREDENTIAL = "test"  # only ever sent to a local endpoint
DEFAULT_LOCAL_REGION = "us-east-1"

CallObserver = Callable[[str, str], None]
"""Called once per SQS API call with (operation, outcome): outcome is "ok" or the error code."""


class ClientSettings(Protocol):
    """What the client factory reads of the settings (``conveyor.settings.SqsSettings`` has it all;
    sqs/ does not import the settings: they sit above it)."""

    @property
    def endpoint(self) -> str | None: ...
    @property
    def aws_region(self) -> str | None: ...
    @property
    def sqs_max_pool_connections(self) -> int: ...
    @property
    def sqs_retry_mode(self) -> str: ...
    @property
    def sqs_max_attempts(self) -> int: ...
    @property
    def sqs_connect_timeout_seconds(self) -> float: ...
    @property
    def sqs_read_timeout_seconds(self) -> float | None: ...


def client_config(settings: ClientSettings) -> AioConfig:
    """botocore config: explicit retry mode and pool size (the default pool of 10 caps concurrency)."""
    return AioConfig(
        max_pool_connections=settings.sqs_max_pool_connections,
        retries={"mode": settings.sqs_retry_mode, "max_attempts": settings.sqs_max_attempts},
        connect_timeout=settings.sqs_connect_timeout_seconds,
        read_timeout=settings.sqs_read_timeout_seconds or READ_TIMEOUT_SECONDS,
        # Conveyor validates every request against SQS's rules itself (sqs/limits.py); botocore's
        # second, generic validation cost about a fifth of the CPU of a SendMessageBatch call.
        parameter_validation=False,
    )


@asynccontextmanager
async def sqs_client(settings: ClientSettings, observer: CallObserver | None = None) -> AsyncIterator[SQSClient]:
    """Create the process's SQS client. Dummy credentials are used only with a local endpoint."""
    session = get_session()
    kwargs: dict[str, Any] = {"config": client_config(settings)}
    region = settings.aws_region or session.get_config_variable("region")
    if settings.endpoint:
        kwargs["endpoint_url"] = settings.endpoint
        region = region or DEFAULT_LOCAL_REGION
        if await session.get_credentials() is None:
            kwargs["aws_access_key_id"] = LOCAL_DUMMY_CREDENTIAL
            kwargs["aws_secret_access_key"] = LOCAL_DUMMY_CREDENTIAL
    if not region:
        raise ConfigurationError(
            "no AWS region: for real SQS set AWS_REGION (or CONVEYOR_AWS_REGION); for a local one set"
            " CONVEYOR_SQS_ENDPOINT_URL (`conveyor dev` prints it)"
        )
    async with session.create_client("sqs", region_name=region, **kwargs) as client:
        cache_user_agent(client)
        if observer is not None:
            watch_calls(client, observer)
        yield client


def cache_user_agent(client: SQSClient) -> None:
    """Build botocore's User-Agent string once per set of features instead of twice per call.

    botocore rebuilds the whole string (SDK, OS, language, config, app id, each part sanitised) when it
    makes a request and again just before sending it, so that features registered during the call
    show; all of it depends only on the client (fixed) and on those feature ids: they are the cache's
    key, so the header is the one botocore would send. About a tenth of botocore's CPU per call. If a
    botocore release no longer has the builder where it is expected, nothing is cached.
    """
    creator = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    if creator is None or build is None:
        return
    built: dict[tuple[frozenset[str], frozenset[str]], str] = {}

    def to_string() -> str:
        context = get_context()
        client_features = getattr(creator, "_client_features", None) or ()
        key = (frozenset(client_features), frozenset(context.features) if context is not None else frozenset())
        found = built.get(key)
        if found is None:
            found = built[key] = build()
        return found

    creator.to_string = to_string


def watch_calls(client: Any, observer: CallObserver, service: str = "sqs") -> None:
    """Report every API call's outcome to ``observer`` (used for the per-operation metrics); the S3
    client's too (``service="s3"``).

    The handlers never raise: an exception here would fail the SQS call itself.
    """

    def after_call(event_name: str, parsed: Any = None, **_: Any) -> None:
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        _observe(observer, event_name, str(error.get("Code", "error")) if error else "ok")

    def after_call_error(event_name: str, exception: BaseException | None = None, **_: Any) -> None:
        _observe(observer, event_name, type(exception).__name__ if exception else "error")

    client.meta.events.register(f"after-call.{service}", after_call)
    client.meta.events.register(f"after-call-error.{service}", after_call_error)


def _observe(observer: CallObserver, event_name: str, outcome: str) -> None:
    operation = event_name.rsplit(".", 1)[-1]  # "after-call.sqs.SendMessageBatch"
    try:
        observer(operation, outcome)
    except Exception:  # noqa: BLE001 - metrics must never fail an SQS call
        return
