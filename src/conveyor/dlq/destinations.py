"""Where a dead-lettered message goes back to: the queues that send to this DLQ
(ListDeadLetterSourceQueues), by name, with the configured queue as the default. A source named in
a message that does not use this DLQ is refused: a message cannot choose where it goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.dlq.locate import Located
from conveyor.dlq.record import DeadLettered
from conveyor.sqs.errors import SQS_ERRORS, classify
from conveyor.sqs.limits import MAX_MESSAGE_BYTES
from conveyor.sqs.queues import FIFO_SUFFIX, queue_name_from_arn, queue_name_from_url

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    url: str
    max_bytes: int

    @property
    def fifo(self) -> bool:
        return self.name.endswith(FIFO_SUFFIX)


class Destinations:
    """The queues that send to this DLQ, by name; the configured one is the default."""

    def __init__(self, client: SQSClient, default: Destination, sources: dict[str, str]) -> None:
        self._client = client
        self.default = default
        self._sources = sources  # name -> url
        self._known: dict[str, Destination] = {default.name: default}

    @classmethod
    async def load(cls, client: SQSClient, located: Located) -> Destinations:
        sources: dict[str, str] = {}
        token: dict[str, str] = {}
        while True:
            page = await client.list_dead_letter_source_queues(QueueUrl=located.dlq_url, MaxResults=1000, **token)
            sources.update((queue_name_from_url(url), url) for url in page.get("queueUrls", []))
            if not page.get("NextToken"):
                break
            token = {"NextToken": page["NextToken"]}
        default = Destination(located.name, located.queue.url, located.queue.max_message_bytes)
        return cls(client, default, sources)

    @property
    def only_default(self) -> bool:
        return set(self._sources) <= {self.default.name}

    async def of(self, message: DeadLettered) -> Destination | str:
        """Where ``message`` goes back to, or why it cannot go back."""
        source = message.source_queue
        if source is None:
            return self.default
        name = queue_name_from_arn(source) if source.startswith("arn:") else queue_name_from_url(source)
        if name in self._known:
            return self._known[name]
        if name not in self._sources:
            return f"its source queue {name} does not send to this dead-letter queue"
        url = self._sources[name]
        try:
            attrs = await self._client.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
        except SQS_ERRORS as exc:
            failure = classify(exc)
            return f"source queue {name}: {failure.code} ({failure.message})"
        size = int(attrs["Attributes"].get("MaximumMessageSize", MAX_MESSAGE_BYTES))
        self._known[name] = Destination(name, url, size)
        return self._known[name]
