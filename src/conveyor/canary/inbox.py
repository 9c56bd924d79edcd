"""The canary's reading of the canary queue: it takes only its own replies.

Replies of other canary instances are made visible again at once; replies older than ``stale_after``
(their canary gave up on them) and anything that is not a reply signed with the secret are deleted
once older than that too; a reply to a probe of this process that came too late is deleted and
reported as late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.canary.wire import Reply, parse_reply

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

MAX_WAIT_SECONDS = 20
HOLD_SECONDS = 30  # visibility of what one receive takes: no other canary sees it while we sort it
PAUSE_MIN, PAUSE_MAX = 0.05, 1.0  # between receives that brought nothing of ours (no hot loop)
MAX_LATE_IDS = 1000


@dataclass
class Sorted:
    """What one receive brought, sorted."""

    mine: Reply | None = None
    late: list[Reply] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # receipt handles
    release: list[str] = field(default_factory=list)


class ReplyInbox:
    def __init__(
        self,
        client: SQSClient,
        url: str,
        secret: bytes,
        *,
        stale_after: float,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._url = url
        self._secret = secret
        self._stale_after_ms = stale_after * 1000
        self._wall_clock = wall_clock
        self._clock = clock
        self._given_up: dict[str, None] = {}  # ids of this process's probes that timed out (oldest first)
        self.late: list[Reply] = []  # replies to those, seen since the caller last looked

    def give_up(self, canary_id: str) -> None:
        """This process stopped waiting for ``canary_id``: a reply that comes later is late, not foreign."""
        self._given_up[canary_id] = None
        while len(self._given_up) > MAX_LATE_IDS:
            del self._given_up[next(iter(self._given_up))]

    async def wait_for(self, canary_id: str, deadline: float) -> Reply | None:
        """The reply to ``canary_id``, or None if none came before ``deadline`` (monotonic).
        SQS errors are raised (the caller reports the step)."""
        pause = PAUSE_MIN
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return None
            wait = int(min(MAX_WAIT_SECONDS, remaining))
            response = await self._client.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                VisibilityTimeout=HOLD_SECONDS, MessageSystemAttributeNames=["SentTimestamp"],
            )  # fmt: skip
            found = self._sort(response.get("Messages", []), canary_id)
            await self._settle(found)
            self.late.extend(found.late)
            if found.mine is not None:
                return found.mine
            if found.release or wait == 0:
                await asyncio.sleep(min(pause, max(0.0, deadline - self._clock())))
                pause = min(pause * 2, PAUSE_MAX)

    def _sort(self, messages: Sequence[Mapping[str, Any]], canary_id: str) -> Sorted:
        found = Sorted()
        now_ms = self._wall_clock() * 1000
        for message in messages:
            handle = message["ReceiptHandle"]
            reply = parse_reply(message.get("Body", ""), self._secret)
            if reply is not None and reply.id == canary_id and found.mine is None:
                found.mine = reply
                found.delete.append(handle)
            elif reply is not None and reply.id in self._given_up:
                self._given_up.pop(reply.id)
                found.late.append(reply)
                found.delete.append(handle)
            elif now_ms - int(message.get("Attributes", {}).get("SentTimestamp", now_ms)) > self._stale_after_ms:
                found.delete.append(handle)
            else:
                found.release.append(handle)
        return found

    async def _settle(self, found: Sorted) -> None:
        """Best effort: a reply not deleted is deleted later as stale; one not released comes back
        after HOLD_SECONDS."""
        if found.delete:
            entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(found.delete)]
            await self._client.delete_message_batch(QueueUrl=self._url, Entries=entries)  # type: ignore[arg-type]
        if found.release:
            changes = [
                {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for n, handle in enumerate(found.release)
            ]
            await self._client.change_message_visibility_batch(QueueUrl=self._url, Entries=changes)  # type: ignore[arg-type]
