"""One entry of ``POST /messages/batch`` on its way: validated, maybe keyed, then sent or not."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from conveyor.contracts import App
from conveyor.sqs.queues import QueueConfig
from conveyor.tracing import NoTracing, Tracing
from conveyor.writer.api.problems import EntryProblem
from conveyor.writer.api.request_meta import RequestMeta, is_valid_idempotency_key
from conveyor.writer.api.schemas import MAX_IDEMPOTENCY_KEY_CHARS, BatchEntryIn
from conveyor.writer.replay.keyed import Keyed, fingerprint
from conveyor.writer.sending.offload_rule import OffloadRule
from conveyor.writer.sending.outgoing import Outgoing, build_outgoing

ROUTE = "POST /messages/batch"  # in the fingerprint: a batch entry is not the same request as a POST /messages
type Tracer = NoTracing | Tracing


@dataclass(slots=True)
class Entry:
    id: str
    group_id: str | None
    outgoing: Outgoing | None = None  # None: it failed validation
    keyed: Keyed | None = None  # with an idempotency store and a key
    begun: bool = False  # its key's in-flight marker is ours: finish or abandon it
    token: str | None = None  # that marker's token (an abandon drops only that marker)
    result: str | EntryProblem | None = None  # the SQS MessageId, or why not; None: not settled yet
    replayed: bool = False

    @property
    def pending(self) -> bool:
        return self.result is None

    def settle(self, result: str | BaseException) -> None:
        """Take a send's result: a MessageId or an :class:`EntryProblem` (anything else is a bug: raised)."""
        if isinstance(result, BaseException) and not isinstance(result, EntryProblem):
            raise result
        self.result = result


def derived_key(header_key: str, entry_id: str) -> str:
    """An entry's key from the request's ``Idempotency-Key``: ``<header key>.<entry id>``, or, when
    that is over the 255 characters a key may have (a key of 255 and an id of 80 make 336), its
    SHA-256 in hex: still distinct per entry and the same on a retry, and within the bound that
    handlers storing ``conveyor.idempotency_key`` count on."""
    key = f"{header_key}.{entry_id}"
    return key if len(key) <= MAX_IDEMPOTENCY_KEY_CHARS else hashlib.sha256(key.encode()).hexdigest()


def _entry_key(message: BatchEntryIn, meta: RequestMeta) -> str | None:
    """The entry's own key, else the request's made distinct per entry (else FIFO would drop all but
    one), as the caller gave it (the entry's meta scopes it by the client); None without either."""
    if message.idempotency_key is None:
        return None if meta.key is None else derived_key(meta.key, message.id)
    if not is_valid_idempotency_key(message.idempotency_key):
        raise EntryProblem(
            422, "Invalid message",
            f"idempotency_key: must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} valid characters",
            field="idempotency_key",
        )  # fmt: skip
    return message.idempotency_key


def prepare_entry(
    message: BatchEntryIn,
    meta: RequestMeta,
    queue: QueueConfig,
    *,
    keyed: bool,
    tracer: Tracer,
    contracts: App | None = None,
    offload: OffloadRule | None = None,
) -> Entry:
    """The entry of ``message``, validated and (with a store, ``keyed``) keyed; refused, its result
    is the problem."""
    entry = Entry(message.id, message.group_id)
    try:
        own_key = _entry_key(message, meta)
        entry_meta = meta if own_key == meta.key else dataclasses.replace(meta, key=own_key)
        if tracer.enabled:
            # The entry's send span (a child of the request's) covers its making; its context
            # travels with it, and the SendMessageBatch spans link to it.
            with tracer.send(queue.name) as traceparent:
                entry_meta = dataclasses.replace(entry_meta, traceparent=traceparent)
        entry.outgoing = build_outgoing(message, entry_meta, queue, contracts, offload)
    except EntryProblem as problem:
        entry.result = problem
        return entry
    key = entry_meta.idempotency_key
    if keyed and key is not None:
        entry.keyed = Keyed(key, fingerprint(ROUTE, queue, meta.content_type, message))
    return entry
