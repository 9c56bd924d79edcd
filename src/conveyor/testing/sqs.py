"""An in-memory SQS with the semantics the services rely on: visibility timeouts, receipt handles
that change on every receive, receive counts, redrive to a DLQ, long polls, partial batch failures,
FIFO groups. It takes the calls Conveyor makes, where an aiobotocore SQS client is expected.

Faults are injected explicitly: ``fail_calls`` makes whole calls raise, ``fail_entries`` makes
entries come back in ``Failed``. Time is the event loop's clock, so tests run in real time with
short timeouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ReadTimeoutError

from conveyor.testing.stored import (
    BASE,
    StoredMessage,
    StoredQueue,
    check_entries,
    client_error,
    entry_bytes,
    value_bytes,
)

__all__ = ["BASE", "InMemorySqs", "StoredMessage", "StoredQueue", "as_client", "client_error"]


class InMemorySqs:
    def __init__(self) -> None:
        self.queues: dict[str, StoredQueue] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_calls: dict[str, list[BaseException]] = defaultdict(list)
        self.fail_entries: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {}
        self.received_total = 0  # messages handed out by ReceiveMessage, redeliveries included
        self.receive_delay = 0.0  # seconds between taking messages and answering (a slow response)
        self.call_delay: dict[str, float] = {}  # operation -> seconds before it answers (a slow SQS)
        self.lose_receive_answers = 0  # receives whose messages are taken but whose answer is lost
        self._attempts: dict[str, list[dict[str, Any]]] = {}  # ReceiveRequestAttemptId -> its answer
        self._ids = itertools.count()
        self._sequence = itertools.count(1)

    # --- set-up helpers -----------------------------------------------------------------------
    def create(self, name: str, *, max_receive_count: int | None = 5, **attributes: str) -> StoredQueue:
        attrs = {"MaximumMessageSize": "1048576", "VisibilityTimeout": "30"} | attributes
        if name.endswith(".fifo"):
            attrs["FifoQueue"] = "true"
        queue = self.queues[name] = StoredQueue(name, attrs)
        if max_receive_count is not None:
            dlq_name = name.removesuffix(".fifo") + "-dlq" + (".fifo" if name.endswith(".fifo") else "")
            dlq = self.queues.get(dlq_name) or self.create(dlq_name, max_receive_count=None)
            policy = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count}
            queue.attributes["RedrivePolicy"] = json.dumps(policy)
        return queue

    def put(self, name: str, body: str, attributes: dict[str, Any] | None = None, group: str | None = None) -> str:
        return self._store(self.queues[name], body, attributes or {}, group, 0)

    def queue(self, url: str) -> StoredQueue:
        for queue in self.queues.values():
            if queue.url == url:
                return queue
        raise client_error("AWS.SimpleQueueService.NonExistentQueue", "Any")

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    # --- plumbing -------------------------------------------------------------------------------
    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _record(self, operation: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((operation, kwargs))
        if self.fail_calls[operation]:
            raise self.fail_calls[operation].pop(0)

    async def _answer_later(self, operation: str) -> None:
        if self.call_delay.get(operation):
            await asyncio.sleep(self.call_delay[operation])

    @staticmethod
    def _check_size(queue: StoredQueue, body: str, attributes: dict[str, Any], operation: str) -> None:
        """What AWS refuses: more than 10 attributes, or a message over the queue's MaximumMessageSize."""
        if len(attributes) > 10:
            raise client_error("InvalidParameterValue", operation, message="more than 10 attributes")
        size = len(body.encode()) + sum(
            len(name.encode()) + len(str(a["DataType"]).encode()) + len(value_bytes(a))
            for name, a in attributes.items()
        )
        if size > int(queue.attributes["MaximumMessageSize"]):
            raise client_error("InvalidParameterValue", operation, message="Message must be shorter than the limit")

    def _store(self, queue: StoredQueue, body: str, attributes: dict[str, Any], group: str | None, delay: int) -> str:
        message_id = str(uuid.UUID(int=next(self._ids)))
        try:
            visible_at = self._now() + delay
        except RuntimeError:
            visible_at = 0.0
        queue.messages[message_id] = StoredMessage(
            message_id, body, attributes, int(time.time() * 1000), group, next(self._sequence), visible_at=visible_at
        )
        return message_id

    def _entry_failure(self, operation: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        hook = self.fail_entries.get(operation)
        failure = hook(entry) if hook else None
        return {"Id": entry["Id"], **failure} if failure else None

    def _by_handle(self, queue: StoredQueue, handle: str) -> StoredMessage | None:
        for message in queue.messages.values():
            if message.receipt_handle == handle:
                return message
        return None

    # --- the SQS API the services use -----------------------------------------------------------
    async def get_queue_url(self, QueueName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        self._record("GetQueueUrl", {"QueueName": QueueName})
        if QueueName not in self.queues:
            raise client_error("AWS.SimpleQueueService.NonExistentQueue", "GetQueueUrl")
        return {"QueueUrl": self.queues[QueueName].url}

    async def get_queue_attributes(self, QueueUrl: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        self._record("GetQueueAttributes", {"QueueUrl": QueueUrl, **kwargs})
        queue = self.queue(QueueUrl)
        return {"Attributes": {"QueueArn": queue.arn, **queue.attributes}}

    async def send_message(self, QueueUrl: str, MessageBody: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        self._record("SendMessage", {"QueueUrl": QueueUrl, "MessageBody": MessageBody, **kwargs})
        queue = self.queue(QueueUrl)
        attributes = kwargs.get("MessageAttributes", {})
        self._check_size(queue, MessageBody, attributes, "SendMessage")
        message_id = self._store(queue, MessageBody, attributes, kwargs.get("MessageGroupId"), 0)
        return {"MessageId": message_id, "MD5OfMessageBody": hashlib.md5(MessageBody.encode()).hexdigest()}  # noqa: S324

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self._record("SendMessageBatch", {"QueueUrl": QueueUrl, "Entries": Entries})
        await self._answer_later("SendMessageBatch")
        check_entries(Entries, "SendMessageBatch")
        queue = self.queue(QueueUrl)
        # SQS caps a call's total (bodies and attributes) by 1 MiB and, on a queue whose limit is
        # lower (still 256 KiB, say), by that limit: the whole call fails.
        size = sum(entry_bytes(e) for e in Entries)
        if size > min(1_048_576, int(queue.attributes["MaximumMessageSize"])):
            raise client_error("AWS.SimpleQueueService.BatchRequestTooLong", "SendMessageBatch")
        successful, failed = [], []
        for entry in Entries:
            failure = self._entry_failure("SendMessageBatch", entry)
            if failure:
                failed.append(failure)
                continue
            message_id = self._store(
                queue,
                entry["MessageBody"],
                entry.get("MessageAttributes", {}),
                entry.get("MessageGroupId"),
                entry.get("DelaySeconds", 0),
            )
            successful.append({"Id": entry["Id"], "MessageId": message_id})
        return {"Successful": successful, "Failed": failed}

    async def receive_message(self, QueueUrl: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        self._record("ReceiveMessage", {"QueueUrl": QueueUrl, **kwargs})
        queue = self.queue(QueueUrl)
        wanted = kwargs.get("MaxNumberOfMessages", 1)
        if not 1 <= wanted <= 10:
            raise client_error("InvalidParameterValue", "ReceiveMessage", message="MaxNumberOfMessages is 1 to 10")
        attempt = kwargs.get("ReceiveRequestAttemptId")
        if attempt in self._attempts:  # a retried receive gets the same messages back
            return {"Messages": self._attempts.pop(attempt)}
        deadline = self._now() + kwargs.get("WaitTimeSeconds", 0)
        while True:
            got = self._take(queue, wanted, kwargs.get("VisibilityTimeout", 30))
            if got or self._now() >= deadline:
                break
            await asyncio.sleep(0.005)
        if got and self.receive_delay:
            await asyncio.sleep(self.receive_delay)
        if got and self.lose_receive_answers:
            self.lose_receive_answers -= 1
            if attempt:
                self._attempts[attempt] = got
            raise ReadTimeoutError(endpoint_url=QueueUrl)
        return {"Messages": got} if got else {}

    def _take(self, queue: StoredQueue, wanted: int, visibility: float) -> list[dict[str, Any]]:
        now = self._now()
        policy = json.loads(queue.attributes.get("RedrivePolicy", "{}"))
        taken: list[dict[str, Any]] = []
        locked = self._locked_groups(queue, now)
        for message in list(queue.messages.values()):
            if len(taken) >= wanted:
                break
            if message.visible_at > now or message.group_id in locked:
                continue
            if policy and message.receive_count >= policy["maxReceiveCount"]:
                dlq = next(q for q in self.queues.values() if q.arn == policy["deadLetterTargetArn"])
                dlq.messages[message.message_id] = queue.messages.pop(message.message_id)
                message.receipt_handle = None
                continue
            message.receive_count += 1
            message.received_at = now
            message.visible_at = now + visibility
            message.receipt_handle = uuid.uuid4().hex
            self.received_total += 1
            taken.append(self._wire(message))
        return taken

    @staticmethod
    def _locked_groups(queue: StoredQueue, now: float) -> set[str | None]:
        """FIFO: a group with a message in flight gives out nothing more until it is settled. (SQS
        returns a group's messages in order, several in one receive.)"""
        if queue.attributes.get("FifoQueue") != "true":
            return set()
        return {m.group_id for m in queue.messages.values() if m.receipt_handle and m.visible_at > now}

    @staticmethod
    def _wire(message: StoredMessage) -> dict[str, Any]:
        system = {
            "ApproximateReceiveCount": str(message.receive_count),
            "SentTimestamp": str(message.sent_ms),
        }
        if message.group_id:
            system["MessageGroupId"] = message.group_id
            system["SequenceNumber"] = f"{message.sequence_number:020d}"
            system["MessageDeduplicationId"] = message.message_id
        wire: dict[str, Any] = {
            "MessageId": message.message_id,
            "ReceiptHandle": message.receipt_handle,
            "Body": message.body,
            "Attributes": system,
        }
        if message.attributes:
            wire["MessageAttributes"] = message.attributes
        return wire

    def _past_the_cap(self, message: StoredMessage, seconds: int) -> bool:
        """SQS refuses a visibility that would end more than 12 hours after the receive."""
        held = self._now() - (message.received_at or self._now())
        return seconds < 0 or seconds > 43_200 or held + seconds > 43_200

    async def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self._record("DeleteMessageBatch", {"QueueUrl": QueueUrl, "Entries": Entries})
        await self._answer_later("DeleteMessageBatch")
        check_entries(Entries, "DeleteMessageBatch")
        queue = self.queue(QueueUrl)
        successful, failed = [], []
        for entry in Entries:
            failure = self._entry_failure("DeleteMessageBatch", entry)
            message = self._by_handle(queue, entry["ReceiptHandle"])
            if failure or message is None:
                failed.append(failure or {"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True})
                continue
            queue.deleted.append(queue.messages.pop(message.message_id))
            successful.append({"Id": entry["Id"]})
        return {"Successful": successful, "Failed": failed}

    async def change_message_visibility_batch(
        self,
        QueueUrl: str,  # noqa: N803
        Entries: list[dict[str, Any]],  # noqa: N803
    ) -> dict[str, Any]:
        self._record("ChangeMessageVisibilityBatch", {"QueueUrl": QueueUrl, "Entries": Entries})
        await self._answer_later("ChangeMessageVisibilityBatch")
        check_entries(Entries, "ChangeMessageVisibilityBatch")
        queue = self.queue(QueueUrl)
        successful, failed = [], []
        for entry in Entries:
            failure = self._entry_failure("ChangeMessageVisibilityBatch", entry)
            message = self._by_handle(queue, entry["ReceiptHandle"])
            if failure or message is None:
                failed.append(failure or {"Id": entry["Id"], "Code": "MessageNotInflight", "SenderFault": True})
                continue
            if self._past_the_cap(message, entry["VisibilityTimeout"]):
                failed.append({"Id": entry["Id"], "Code": "InvalidParameterValue", "SenderFault": True})
                continue
            message.visible_at = self._now() + entry["VisibilityTimeout"]
            successful.append({"Id": entry["Id"]})
        return {"Successful": successful, "Failed": failed}


def as_client(fake: InMemorySqs) -> Any:
    """The fake where an aiobotocore SQSClient is expected (it implements the calls we make)."""
    return fake
