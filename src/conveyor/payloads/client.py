"""The aiobotocore S3 client factory: one client per process, beside the SQS one, with the same
region, credentials and retry rules (the endpoint is S3's own, or the local SQS one: LocalStack
serves both)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from conveyor.errors import ConfigurationError
from conveyor.sqs.client import DEFAULT_LOCAL_REGION, LOCAL_DUMMY_CREDENTIAL, CallObserver, ClientSettings, watch_calls

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

READ_TIMEOUT_SECONDS = 60.0  # a 32 MiB object takes seconds on a slow link: the SQS default of 5 s would cut it


class S3ClientSettings(ClientSettings, Protocol):
    """What the factory reads: the SQS client's settings (region, pool, retries) and S3's endpoint."""

    @property
    def s3_endpoint(self) -> str | None: ...


@asynccontextmanager
async def s3_client(settings: S3ClientSettings, observer: CallObserver | None = None) -> AsyncIterator[S3Client]:
    """Create the process's S3 client. Dummy credentials are used only with a local endpoint."""
    session = get_session()
    endpoint = settings.s3_endpoint
    config = AioConfig(
        max_pool_connections=settings.sqs_max_pool_connections,
        retries={"mode": settings.sqs_retry_mode, "max_attempts": settings.sqs_max_attempts},
        connect_timeout=settings.sqs_connect_timeout_seconds,
        read_timeout=READ_TIMEOUT_SECONDS,
        # A local endpoint (127.0.0.1:4566) has no virtual host per bucket.
        s3={"addressing_style": "path"} if endpoint else None,
    )
    kwargs: dict[str, Any] = {"config": config}
    region = settings.aws_region or session.get_config_variable("region")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
        region = region or DEFAULT_LOCAL_REGION
        if await session.get_credentials() is None:
            kwargs["aws_access_key_id"] = LOCAL_DUMMY_CREDENTIAL
            kwargs["aws_secret_access_key"] = LOCAL_DUMMY_CREDENTIAL
    if not region:
        raise ConfigurationError("no AWS region: for real S3 set AWS_REGION (or CONVEYOR_AWS_REGION)")
    async with session.create_client("s3", region_name=region, **kwargs) as client:
        if observer is not None:
            watch_calls(client, observer, "s3")
        yield client
