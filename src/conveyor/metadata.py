"""Names of the message attributes Conveyor itself writes and reads."""

REQUEST_ID = "conveyor.request_id"
CONTENT_TYPE = "conveyor.content_type"
IDEMPOTENCY_KEY = "conveyor.idempotency_key"
TYPE = "conveyor.type"  # the message type's name (conveyor.App), set by the writer from the request's "type"
TRACEPARENT = "traceparent"  # W3C trace context, the name OpenTelemetry's SQS propagation uses
DEAD_LETTER = "conveyor.dead_letter"  # JSON: error type and message, original id, receive count
MIRRORED = "conveyor.mirrored"  # on a mirror queue's copy: the live message's id (CONVEYOR_MIRROR_QUEUE_URL)
REDRIVE_HISTORY = "conveyor.redrive_history"  # JSON list of earlier dead-letter records (conveyor dlq redrive)
RESERVED_PREFIX = "conveyor."
# The S3 pointer's size attributes (payloads/pointer.py): a message carrying one is read as a pointer.
RESERVED_NAMES = frozenset({TRACEPARENT, "extendedpayloadsize", "sqslargepayloadsize"})
RESERVED_TEXT = (
    "names starting with 'conveyor.', and 'traceparent', 'ExtendedPayloadSize' and 'SQSLargePayloadSize', are reserved"
)


def is_reserved(name: str) -> bool:
    """Attribute names users may not set: Conveyor's own metadata."""
    return name.lower().startswith(RESERVED_PREFIX) or name.lower() in RESERVED_NAMES
