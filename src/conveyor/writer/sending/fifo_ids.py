"""The ids a message carries on a FIFO queue: its ``MessageGroupId`` (required there, and a FIFO
queue takes no per-message delay) and its ``MessageDeduplicationId``, made in its client's scope.

SQS drops a message whose deduplication id it saw in the last 5 minutes, whoever sent it. So no
client may choose an id that another client's message gets: every id the writer sends is made here,
from the client's name (the empty one without ``X-Conveyor-Client``), a tag saying where the id
comes from, and the id's source:

- ``<client>/<deduplication_id>``: the request's own ``deduplication_id`` field;
- ``<client>!<key>``: derived from the caller's idempotency key (as given, not the scoped one);
- ``sha256(<client>#<body>)``: derived from the body on a queue with content-based deduplication
  when a client is known (SQS's own would hash the body alone, across clients); without a client,
  SQS's own content-based deduplication is kept (no id is sent).

A client's name never holds ``/``, ``!`` or ``#`` (api/request_meta.py), so the text before hashing
tells the client and the source apart: distinct inputs never give one text. A text that is not a
valid deduplication id (1 to 128 printable ASCII characters) is replaced by its SHA-256 in hex,
which holds none of the tags, so a hashed id never equals an unhashed one.
"""

from __future__ import annotations

import hashlib

from conveyor.sqs import limits
from conveyor.sqs.queues import QueueConfig
from conveyor.writer.api.problems import invalid_message
from conveyor.writer.api.request_meta import RequestMeta
from conveyor.writer.api.schemas import MessageIn

EXPLICIT = "/"
KEYED = "!"
CONTENT = "#"


def _scoped(client: str | None, tag: str, source: str) -> str:
    text = f"{client or ''}{tag}{source}"
    if tag != CONTENT and limits.is_valid_dedup_id(text):
        return text
    return hashlib.sha256(text.encode()).hexdigest()


def deduplication_id(
    client: str | None, *, explicit: str | None, key: str | None, body: str, content_based: bool
) -> str | None:
    """The id for a message of ``client`` with its ``explicit`` deduplication id, else its caller's
    idempotency ``key``, else (on a ``content_based`` queue with a client) its ``body`` as sent;
    None when SQS derives it (content-based, no client) or nothing can (the caller refuses that)."""
    if explicit is not None:
        return _scoped(client, EXPLICIT, explicit)
    if key is not None:
        return _scoped(client, KEYED, key)
    if content_based and client is not None:
        return _scoped(client, CONTENT, body)
    return None


def fifo_ids(message: MessageIn, meta: RequestMeta, queue: QueueConfig, body: str) -> tuple[str | None, str | None]:
    """The message's group id and deduplication id as sent to ``queue`` (``body`` as sent); raise
    :class:`~conveyor.writer.api.problems.EntryProblem` for what the queue's kind does not take."""
    if not queue.is_fifo:
        if message.deduplication_id is not None:
            raise invalid_message("deduplication_id", "only FIFO queues take a deduplication id")
        return message.group_id, None
    if message.delay_seconds is not None:
        raise invalid_message("delay_seconds", "FIFO queues do not take a per-message delay")
    if message.group_id is None:
        raise invalid_message("group_id", "required on a FIFO queue")
    dedup = deduplication_id(
        meta.client, explicit=message.deduplication_id, key=meta.key, body=body,
        content_based=queue.content_based_dedup,
    )  # fmt: skip
    if dedup is None and not queue.content_based_dedup:
        raise invalid_message("deduplication_id", "required on this FIFO queue (or an Idempotency-Key)")
    return message.group_id, dedup
