"""A FIFO message's ``MessageDeduplicationId``, in its client's scope.

SQS drops a message whose deduplication id it saw in the last 5 minutes, whoever sent it. So no
client may choose an id that another client's message gets: every id the writer sends is made here,
from the client's name (the empty one without ``X-Conveyor-Client``), a tag saying where the id
comes from, and the id's source:

- ``<client>/<deduplication_id>``: the request's own ``deduplication_id`` field;
- ``<client>!<key>``: derived from the caller's idempotency key (as given, not the scoped one);
- ``sha256(<client>#<body>)``: derived from the body on a queue with content-based deduplication
  when a client is known (SQS's own would hash the body alone, across clients); without a client,
  SQS's own content-based deduplication is kept (no id is sent).

A client's name never holds ``/``, ``!`` or ``#`` (request_meta.py), so the text before hashing
tells the client and the source apart: distinct inputs never give one text. A text that is not a
valid deduplication id (1 to 128 printable ASCII characters) is replaced by its SHA-256 in hex,
which holds none of the tags, so a hashed id never equals an unhashed one.
"""

from __future__ import annotations

import hashlib

from conveyor.sqs import limits

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
