"""Read a dead-letter queue through: receive batches, hold each message invisible for the run, and
make everything not deleted visible again at the end (visibility 0), whatever happened.

Receiving is the only way to read SQS: each read adds one to the message's ApproximateReceiveCount
in the DLQ (harmless there: a DLQ has no redrive policy of its own). The run ends at the first
receive that brings nothing new (a long poll of 1 s, which asks every SQS server), or that brings
only messages seen before (a run longer than the hold sees them again). On a FIFO queue SQS hands
out no more of a message group while one of its messages is held: a run sees at most the first ten
of each group (redrive, which deletes what it moved, sees more on its next run).

A scan with a start (redrive's) reads only what was in the queue when it started. A message moved
back by this run that failed again comes back as a new message (a new id): moved again, a processor
that keeps failing it would keep the run going for ever. So a message that arrived after the start
is held like the others but never handed out. It is known by its SentTimestamp (the processor's
dead-letter copy, or a move task's copy, is a new message) and, without relying on SQS's clock and
this one agreeing, by the id this run gave it (SQS's redrive policy keeps the id; the processor's
record names it as ``original_message_id``). A receive that brings only such messages ends the run
too: what the run holds is out of sight, so what was there at the start has been read, and a steady
flow of new dead letters would otherwise keep it going.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Self

from conveyor.dlq.record import DeadLettered
from conveyor.sqs.errors import SQS_ERRORS
from conveyor.sqs.limits import MAX_BATCH_ENTRIES

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

HOLD_SECONDS = 300  # long enough for a run; a crash mid-run makes them visible again after this


class Scan:
    def __init__(self, client: SQSClient, url: str, *, hold: int = HOLD_SECONDS, started_ms: int | None = None) -> None:
        self._client = client
        self._url = url
        self._hold = hold
        self._started_ms = started_ms  # None: everything, whenever it arrived (peek, export)
        self._held: dict[str, str] = {}  # message id -> its latest receipt handle
        self._seen: set[str] = set()
        self._sent: set[str] = set()  # ids of the messages this run sent (see sent())
        self.late = 0  # messages seen that arrived after the start: left where they are
        self.release_failures = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()

    async def batches(self, limit: int | None = None) -> AsyncIterator[list[DeadLettered]]:
        """Messages not seen before in this run, up to ``limit`` (all when None), a batch at a time."""
        taken = 0
        while limit is None or taken < limit:
            wanted = MAX_BATCH_ENTRIES if limit is None else min(MAX_BATCH_ENTRIES, limit - taken)
            response = await self._client.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=wanted, WaitTimeSeconds=1, VisibilityTimeout=self._hold,
                MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"],
            )  # fmt: skip
            messages = [DeadLettered.from_sqs(raw) for raw in response.get("Messages", [])]
            for message in messages:
                self._held[message.message_id] = message.receipt_handle
            fresh = [m for m in messages if m.message_id not in self._seen]
            self._seen.update(m.message_id for m in fresh)
            there = [m for m in fresh if not self._arrived_since_start(m)]
            self.late += len(fresh) - len(there)
            if not there:
                return
            taken += len(there)
            yield there

    def _arrived_since_start(self, message: DeadLettered) -> bool:
        if self._started_ms is None:
            return False
        if message.message_id in self._sent or message.original_message_id in self._sent:
            return True
        sent = message.system.get("SentTimestamp", "")
        return sent.isdigit() and int(sent) > self._started_ms

    def sent(self, message_id: str) -> None:
        """This run sent a message with this id (moved one back): should it come back, it is late."""
        self._sent.add(message_id)

    def deleted(self, message_id: str) -> None:
        """The message left the queue: nothing to release."""
        self._held.pop(message_id, None)

    async def release(self) -> None:
        """Visibility 0 for everything still held (best effort: the rest comes back after the hold)."""
        handles = list(self._held.values())
        self._held.clear()
        for start in range(0, len(handles), MAX_BATCH_ENTRIES):
            chunk = handles[start : start + MAX_BATCH_ENTRIES]
            entries = [{"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0} for n, h in enumerate(chunk)]
            try:
                response = await self._client.change_message_visibility_batch(QueueUrl=self._url, Entries=entries)  # type: ignore[arg-type]
            except SQS_ERRORS:
                self.release_failures += len(chunk)
                continue
            self.release_failures += len(response.get("Failed", []))
