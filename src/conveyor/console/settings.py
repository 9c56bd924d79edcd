"""The console's settings (prefix ``CONVEYOR_``), beside the queue's own (:class:`SqsSettings`)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from conveyor.settings import CanarySecret, Port, SqsSettings

MAX_METRICS_URLS = 50


class ConsoleSettings(SqsSettings):
    """`conveyor console` ([The console](console.md))."""

    console_host: str = "127.0.0.1"
    """the console's address; it is for operators: keep it on the loopback or behind the gateway's internal rules"""
    console_port: Port = 8002
    """the console's port"""
    console_token: CanarySecret | None = None
    """the token every state-changing request needs (the sign-in form, or `Authorization: Bearer`; 16 characters at
    least); unset: the console is read-only"""
    console_metrics_urls: str = ""
    """the processors' (and the canary's) metrics endpoints, comma-separated (for example
    `http://10.0.0.7:8001/metrics`): the console shows their handled and failed rates, in flight and concurrency"""
    console_allowed_hosts: str = ""
    """the host names the console answers to besides `127.0.0.1`, `localhost`, `::1` and `CONVEYOR_CONSOLE_HOST`
    (comma-separated; behind a gateway, the name it is reached by): any other `Host` is refused, so that a web page
    cannot read the console through DNS rebinding"""
    console_list_limit: Annotated[int, Field(ge=10, le=1000)] = 200
    """dead letters the console reads for its list at most (reading a DLQ means receiving from it)"""

    @field_validator("console_metrics_urls")
    @classmethod
    def _urls(cls, value: str) -> str:
        urls = [url.strip() for url in value.split(",") if url.strip()]
        if len(urls) > MAX_METRICS_URLS:
            raise ValueError(f"at most {MAX_METRICS_URLS} URLs")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL")
        return ",".join(urls)

    @property
    def metrics_urls(self) -> tuple[str, ...]:
        return tuple(url for url in self.console_metrics_urls.split(",") if url)

    @property
    def allowed_hosts(self) -> list[str]:
        named = {self.console_host, *(h.strip() for h in self.console_allowed_hosts.split(",") if h.strip())}
        return sorted(named | {"127.0.0.1", "localhost", "[::1]", "::1"})
