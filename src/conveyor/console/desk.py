"""The console's one reader of the dead-letter queue: its list of dead letters, read through and
kept for a few seconds, and the turn it takes with the actions (see :mod:`conveyor.console.actions`).

Reading an SQS queue means receiving from it: a read holds what it received out of sight until it
ends. Two reads at once would hide messages from each other, so reads and actions take turns (one
lock); while an action runs, the list is the one read before it, and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from conveyor.command_error import CommandError, sqs_trouble
from conveyor.dlq.locate import Located, locate
from conveyor.dlq.record import DeadLettered
from conveyor.dlq.scan import Scan
from conveyor.settings import SqsSettings
from conveyor.sqs.errors import SQS_ERRORS

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

FRESH_SECONDS = 5.0  # a list this young is shown again instead of read again (a reload, the detail page)
LOCATE_SECONDS = 60.0
LIST_HOLD_SECONDS = 60  # a read takes seconds; a console stopped mid-read hides what it held this long at most


@dataclass(frozen=True, slots=True)
class Listing:
    messages: tuple[DeadLettered, ...] = ()
    read_at: float = 0.0
    dlq_name: str = ""
    about: int | None = None  # ApproximateNumberOfMessages when read
    limit_reached: bool = False
    problem: str | None = None  # why there is no list (no DLQ, SQS unreachable)
    stale: bool = False  # an action is running: this is the list read before it

    def find(self, message_id: str) -> DeadLettered | None:
        return next((m for m in self.messages if m.message_id == message_id), None)


@dataclass
class _Located:
    at: float = -LOCATE_SECONDS
    located: Located | None = None
    problem: str | None = None


@dataclass
class Desk:
    client: SQSClient
    settings: SqsSettings
    limit: int
    clock: Callable[[], float] = time.monotonic
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # reads and actions, one at a time
    acting: bool = False  # an action holds the turn (set by the actions)
    _listing: Listing | None = None
    _where: _Located = field(default_factory=_Located)

    async def located(self) -> Located:
        """The queue and its DLQ (kept a minute); a one-line CommandError when there is none."""
        if self.clock() - self._where.at >= LOCATE_SECONDS or self._where.located is None:
            try:
                self._where = _Located(self.clock(), await locate(self.client, self.settings))
            except CommandError as exc:
                self._where = _Located(self.clock(), None, str(exc))
        if self._where.located is None:
            raise CommandError(self._where.problem or "no dead-letter queue")
        return self._where.located

    def forget(self) -> None:
        """What was read is out of date (an action moved or deleted messages)."""
        self._listing = None

    async def listing(self) -> Listing:
        """The list: the one kept if it is young, else read now (readers at once share one read);
        while an action runs, the one read before it, marked stale."""
        kept = self._listing
        if self.acting:
            if kept is None:
                return Listing(problem="an action is running: the list is read again once it is done")
            return replace(kept, stale=True)
        async with self.turn:
            kept = self._listing  # another reader may have read it while this one waited
            if kept is not None and self.clock() - kept.read_at < FRESH_SECONDS:
                return kept
            self._listing = await self._read()
            return self._listing

    async def _read(self) -> Listing:
        try:
            located = await self.located()
        except CommandError as exc:
            return Listing(read_at=self.clock(), problem=str(exc))
        read: list[DeadLettered] = []
        try:
            async with Scan(self.client, located.dlq_url, hold=LIST_HOLD_SECONDS) as scan:
                async for batch in scan.batches(self.limit):
                    read.extend(batch)
            attrs = await self.client.get_queue_attributes(
                QueueUrl=located.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        except SQS_ERRORS as exc:
            return Listing(read_at=self.clock(), problem=str(sqs_trouble(f"dead-letter queue {located.dlq_name}", exc)))
        about = attrs["Attributes"].get("ApproximateNumberOfMessages")
        return Listing(
            messages=tuple(read),
            read_at=self.clock(),
            dlq_name=located.dlq_name,
            about=int(about) if about is not None else None,
            limit_reached=len(read) >= self.limit,
        )
