"""Request and response bodies of the public API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictInt, StrictStr

from conveyor.contracts import TYPE_NAME
from conveyor.sqs.limits import BATCH_ID_PATTERN, MAX_DEDUP_ID_CHARS, MAX_DELAY_SECONDS

MAX_IDEMPOTENCY_KEY_CHARS = 255  # Stripe's limit

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
AttributeValue = StrictStr | StrictInt | FiniteFloat


class MessageIn(BaseModel):
    """One message: ``body`` becomes the SQS MessageBody as compact JSON."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(pattern=f"^{TYPE_NAME.pattern}$")] | None = Field(
        default=None,
        description="The message type's name (the app's handler for it); the body is validated against its model.",
    )
    body: JsonValue = Field(description="Any JSON value; sent as its compact JSON serialisation.")
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict,
        description="Message attributes: strings or numbers. At most 10 with Conveyor's own.",
    )
    delay_seconds: Annotated[int, Field(strict=True, ge=0, le=MAX_DELAY_SECONDS)] | None = None
    group_id: Annotated[str, Field(min_length=1, max_length=MAX_DEDUP_ID_CHARS)] | None = None
    deduplication_id: Annotated[str, Field(min_length=1, max_length=MAX_DEDUP_ID_CHARS)] | None = None


class BatchEntryIn(MessageIn):
    """One entry of a batch: a message plus the client's id for it."""

    id: Annotated[str, Field(pattern=BATCH_ID_PATTERN)] = Field(
        description="The client's id for this entry, unique within the batch."
    )
    idempotency_key: Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS)] | None = Field(
        default=None,
        description="This entry's own Idempotency-Key (else the request's header with '.<id>' appended, if any).",
    )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[BatchEntryIn], Field(min_length=1, max_length=100)]


class Accepted(BaseModel):
    message_id: str = Field(description="The SQS MessageId.")
    request_id: str


class BatchSuccess(BaseModel):
    id: str
    message_id: str
    replayed: bool = Field(
        default=False,
        exclude_if=lambda replayed: not replayed,
        description="Present (true) when this entry's idempotency key was sent before: its first result.",
    )


class BatchFailure(BaseModel):
    id: str
    status: int
    title: str
    detail: str
    code: str | None = None
    retryable: bool
    field: str | None = Field(default=None, exclude_if=lambda value: value is None)
    errors: list[dict[str, str]] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="A typed body's failing fields (field, message), like the single route's problem.",
    )


class BatchResult(BaseModel):
    successful: list[BatchSuccess]
    failed: list[BatchFailure]


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``). ``type`` names the kind of
    problem (``urn:conveyor:problem:<title>``, listed in docs/errors.md)."""

    type: str = ""
    title: str
    status: int
    detail: str
    request_id: str | None = None
    code: str | None = Field(default=None, description="The SQS error code, for SQS errors.")
    retryable: bool | None = None
    field: str | None = Field(default=None, description="The offending field, for 413 and 422.")
    errors: list[dict[str, str]] | None = Field(
        default=None, description="Every failing field (field, message): a typed body's, or the request's."
    )

    def model_post_init(self, context: object, /) -> None:
        if not self.type:
            self.type = "urn:conveyor:problem:" + self.title.lower().replace(" ", "-")


class HealthStatus(BaseModel):  # what /healthz and /readyz answer
    status: str
