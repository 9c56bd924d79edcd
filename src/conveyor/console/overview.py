"""The overview's figures: the three queues as SQS counts them (``conveyor status``), the
processors' and the canary's own numbers (:mod:`conveyor.console.scrape`), read afresh each time
the page or its live chart asks (every few seconds), at most one read at a time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from conveyor.command_error import CommandError
from conveyor.console.scrape import Scraped, scrape
from conveyor.settings import SqsSettings
from conveyor.sqs.queues import queue_name_of
from conveyor.status import QueueStatus, collect_with

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

SHARED_SECONDS = 1.0  # pages and charts asking within a second share one read


@dataclass(frozen=True, slots=True)
class Overview:
    at: float
    queues: tuple[QueueStatus, ...]
    scraped: Scraped

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "queues": [asdict(q) for q in self.queues],
            "processors": self.scraped.figures if self.scraped.has_processors else None,
            "canary": self.scraped.figures if self.scraped.has_canary else None,
            "endpoints": [asdict(e) for e in self.scraped.endpoints],
        }


class Looker:
    def __init__(self, client: SQSClient, session: aiohttp.ClientSession, settings: SqsSettings,
                 metrics_urls: tuple[str, ...]) -> None:  # fmt: skip
        self._client = client
        self._session = session
        self._settings = settings
        self._urls = metrics_urls
        self._lock = asyncio.Lock()
        self._last: Overview | None = None

    async def overview(self) -> Overview:
        async with self._lock:
            if self._last is not None and time.time() - self._last.at < SHARED_SECONDS:
                return self._last
            async with asyncio.TaskGroup() as group:
                queues = group.create_task(self._queues())
                scraped = group.create_task(scrape(self._session, self._urls))
            self._last = Overview(time.time(), tuple(queues.result()), scraped.result())
            return self._last

    async def _queues(self) -> list[QueueStatus]:
        try:
            return await collect_with(self._client, self._settings)
        except CommandError as exc:  # the queue itself is missing or unreachable: said in its row
            return [QueueStatus("queue", queue_name_of(self._settings), None, problem=str(exc))]
