"""The payload settings both services read (see docs/payloads.md)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.sqs.limits import MAX_MESSAGE_BYTES

# S3's rules for a bucket name (the common subset: no dots, which break TLS with virtual-hosted addressing)
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"
BUCKET_LIST_PATTERN = rf"^({BUCKET_PATTERN[1:-1]}(,{BUCKET_PATTERN[1:-1]})*)?$"
MIN_OFFLOAD_BYTES = 1024  # a pointer and Conveyor's own attributes must fit below the threshold
AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")  # an SQS endpoint there is no local S3


class PayloadSettings(BaseSettings):
    """Payloads past SQS's limit, through S3 ([Large payloads](payloads.md))."""

    model_config = SettingsConfigDict(
        env_prefix="CONVEYOR_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    payload_bucket: Annotated[str, Field(pattern=BUCKET_PATTERN)] | None = None
    """the S3 bucket the writer stores a message's payload in when the message is over the queue's
    `MaximumMessageSize` (SQS then carries a pointer, as the AWS SQS Extended Clients do); unset: such a message is a
    413 ([Large payloads](payloads.md))"""
    payload_offload_bytes: Annotated[int, Field(ge=MIN_OFFLOAD_BYTES, le=MAX_MESSAGE_BYTES)] | None = None
    """offload messages over this many bytes (body and attributes, as SQS counts them) instead of over the queue's
    `MaximumMessageSize`; unset: the queue's limit"""
    payload_prefix: Annotated[str, Field(max_length=512, pattern=r"^[A-Za-z0-9!_.*'()/-]*$")] = ""
    """the stored objects' key prefix (for example `payloads/`); each key is the prefix and a random UUID"""
    payload_read_buckets: Annotated[str, Field(pattern=BUCKET_LIST_PATTERN)] = ""
    """other producers' buckets the processor may fetch payloads from (comma-separated), beside
    `CONVEYOR_PAYLOAD_BUCKET`; it never deletes their objects. A pointer to any other bucket is dead-lettered"""
    payload_delete: bool = True
    """the processor deletes a payload's S3 object once its message is deleted (handled; a dead-lettered message
    keeps its object); `false` for fleets where another consumer reads the same messages"""
    s3_endpoint_url: AnyHttpUrl | None = None
    """a local S3 such as LocalStack; unset: `CONVEYOR_SQS_ENDPOINT_URL` if that is set (LocalStack serves both),
    else real AWS"""
    sqs_endpoint_url: AnyHttpUrl | None = None  # SqsSettings' own (declared first there): S3 falls back to it

    @property
    def readable_buckets(self) -> frozenset[str]:
        """The buckets a pointer may name: the payload bucket and the other producers' ones."""
        named = {self.payload_bucket} if self.payload_bucket else set()
        return frozenset(named | {bucket for bucket in self.payload_read_buckets.split(",") if bucket})

    @property
    def s3_endpoint(self) -> str | None:
        """S3's endpoint: its own, else the SQS one when that is a local SQS (LocalStack serves both; an
        AWS endpoint of SQS, a FIPS or VPC one say, is SQS's alone), else real AWS (None)."""
        if self.s3_endpoint_url:
            return str(self.s3_endpoint_url).rstrip("/")
        if self.sqs_endpoint_url is None:
            return None
        sqs = str(self.sqs_endpoint_url)  # (a URL, or the text `conveyor dev` puts in a copy of the settings)
        return None if (urlsplit(sqs).hostname or "").endswith(AWS_DOMAINS) else sqs.rstrip("/")

    @field_validator("payload_bucket", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # A Kubernetes ConfigMap or a compose file leaves an empty value for "off".
        return None if value == "" else value
