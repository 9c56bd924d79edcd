"""The processors' (and the canary's) own numbers, read from the metrics endpoints listed in
``CONVEYOR_CONSOLE_METRICS_URLS``: each scraped (2 s at most), the figures the console shows summed
over them. An endpoint that does not answer is named with why, never a failure of the page."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_SECONDS = 2.0
MAX_BYTES = 8 * 1024 * 1024

# sample name -> the figure it adds to (counters are totals: the page turns them into rates)
FIGURES = {
    "conveyor_processor_succeeded_total": "handled",
    "conveyor_processor_failed_total": "failed",
    "conveyor_processor_retried_total": "retried",
    "conveyor_processor_dead_lettered_total": "dead_lettered",
    "conveyor_processor_in_flight": "in_flight",
    "conveyor_processor_running": "running",
    "conveyor_processor_concurrency_limit": "concurrency",
    "conveyor_canary_success_total": "canary_success",
    "conveyor_canary_failure_total": "canary_failure",
    "conveyor_canary_up": "canary_up",
    "conveyor_canary_last_success_timestamp_seconds": "canary_last_success",
    "conveyor_canary_end_to_end_seconds_sum": "canary_seconds_sum",
    "conveyor_canary_end_to_end_seconds_count": "canary_seconds_count",
}
LATEST = {"canary_up", "canary_last_success"}  # not added up: the latest (largest) of the endpoints


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Scraped:
    endpoints: tuple[Endpoint, ...] = ()
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def has_processors(self) -> bool:
        return "handled" in self.figures

    @property
    def has_canary(self) -> bool:
        return "canary_up" in self.figures


def figures_of(text: str) -> dict[str, float]:
    """The figures one endpoint's exposition holds (raises ValueError when it is not one)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            figure = FIGURES.get(sample.name)
            if figure is None:
                continue
            if figure in LATEST:
                found[figure] = max(found.get(figure, sample.value), sample.value)
            else:
                found[figure] = found.get(figure, 0.0) + sample.value
    return found


async def scrape(session: aiohttp.ClientSession, urls: tuple[str, ...]) -> Scraped:
    results: dict[str, dict[str, float] | str] = {}
    async with asyncio.TaskGroup() as group:
        for url in urls:
            group.create_task(_one(session, url, results))
    totals: dict[str, float] = {}
    endpoints = []
    for url in urls:
        got = results[url]
        if isinstance(got, str):
            endpoints.append(Endpoint(url, got))
            continue
        endpoints.append(Endpoint(url))
        for figure, value in got.items():
            totals[figure] = (
                max(totals.get(figure, value), value) if figure in LATEST else totals.get(figure, 0) + value
            )
    return Scraped(tuple(endpoints), totals)


async def _one(session: aiohttp.ClientSession, url: str, results: dict[str, dict[str, float] | str]) -> None:
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS), session.get(url) as response:
            if response.status != 200:
                results[url] = f"HTTP {response.status}"
                return
            body = await response.content.read(MAX_BYTES)
        results[url] = figures_of(body.decode("utf-8", errors="replace"))
    except TimeoutError:
        results[url] = f"no answer within {TIMEOUT_SECONDS:g} s"
    except aiohttp.ClientError as exc:
        results[url] = f"unreachable ({type(exc).__name__})"
    except ValueError as exc:
        results[url] = f"not a Prometheus exposition ({str(exc)[:100]})"
