"""SendMessageBatch for the writer's batcher: each message gets its SQS MessageId or its error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor.sqs.batch_call import EntryResult, call_batch
from conveyor.sqs.batcher import Settle
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

    async def send_each(self, messages: Sequence[Outgoing], settle: Settle[str]) -> None:
        """Send ``messages``; each is settled with its MessageId or its error as soon as that is
        known (an entry being retried does not hold back the others' answers)."""

        def on_result(index: int, result: EntryResult) -> None:
            settle(index, _message_id_or_error(result))

        await call_batch(self._call, [m.entry() for m in messages], self._entry_retries, on_result)


def _message_id_or_error(result: EntryResult) -> SendResult:
    return result if isinstance(result, SqsError) else str(result["MessageId"])
