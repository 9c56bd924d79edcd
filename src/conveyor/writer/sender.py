"""SendMessageBatch for the writer's batcher: each message gets its SQS MessageId or its error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor.sqs.batch_call import call_batch
from conveyor.sqs.errors import SqsError
from conveyor.writer.outgoing import Outgoing

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

type SendResult = str | SqsError  # the SQS MessageId, or why this entry was not taken


class Sender:
    """Sends one batch of already validated messages to one queue."""

    def __init__(self, client: SQSClient, queue_url: str, entry_retries: int) -> None:
        self._client = client
        self._queue_url = queue_url
        self._entry_retries = entry_retries

    async def _call(self, entries: list[Any]) -> Any:
        return await self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)

    async def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        results = await call_batch(self._call, [m.entry() for m in messages], self._entry_retries)
        return [r if isinstance(r, SqsError) else str(r["MessageId"]) for r in results]
