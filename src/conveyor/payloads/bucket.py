"""Creating the payload bucket (for `conveyor dev` and `conveyor queues create`): idempotent, like the
queues. In production the bucket comes from the CloudFormation template (encrypted, public access
blocked, a lifecycle rule); this is for local stacks and first trials."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from conveyor.errors import ConfigurationError
from conveyor.payloads.errors import S3_ERRORS, error_code

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

OURS_ALREADY = frozenset({"BucketAlreadyOwnedByYou"})


async def ensure_bucket(client: S3Client, name: str) -> None:
    """Create bucket ``name`` unless this account has it; raises :class:`ConfigurationError` in one line."""
    region = client.meta.region_name
    extra: dict[str, Any] = {}
    if region and region != "us-east-1":  # us-east-1 takes no location constraint
        extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        await client.create_bucket(Bucket=name, **extra)
    except ClientError as exc:
        if error_code(exc) in OURS_ALREADY:
            return
        raise ConfigurationError(f"cannot create the payload bucket {name}: {error_code(exc)}") from exc
    except S3_ERRORS as exc:
        raise ConfigurationError(f"cannot create the payload bucket {name}: {error_code(exc)}") from exc
