"""`conveyor canary`: prove the public path (HTTP -> writer -> SQS -> processor) end to end.

``--once``: one probe; exit 0 when handled in time, else 1 and one line naming the failed step.
Otherwise a probe every ``--interval`` seconds, one line each (JSON with ``--json``), and Prometheus
metrics on ``--metrics-host:--metrics-port`` (0: none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from prometheus_client import start_http_server

from conveyor.canary.inbox import ReplyInbox
from conveyor.canary.metrics import CanaryMetrics
from conveyor.canary.probe import Prober, ProbeResult, Target
from conveyor.errors import ConfigurationError
from conveyor.settings import CanarySettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import SQS_ERRORS, SqsError, classify
from conveyor.sqs.queues import canary_name, canary_queue_url, queue_name_of

PROG = "conveyor canary"
DEFAULT_METRICS_PORT = 9105
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 (and at most a day), not {text!r}")
    return value


def port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, not {text!r}")
    return int(text)


def http_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, not {text!r}")
    return text


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "canary",
        help="post a canary through the public API and wait until a processor has handled it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The processors and the canary share CONVEYOR_CANARY_SECRET; the canary reads the canary queue "
        "<name>-canary with the usual CONVEYOR_QUEUE_NAME / CONVEYOR_QUEUE_URL, CONVEYOR_SQS_ENDPOINT_URL and "
        "region settings. CONVEYOR_CANARY_URL and CONVEYOR_CANARY_API_KEY are used when the flags are not given. "
        "See docs/canary.md.",
    )
    parser.add_argument("--url", type=http_url, help="the public API's base URL (default http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="sent as X-Api-Key (prefer CONVEYOR_CANARY_API_KEY: flags show in ps)")
    parser.add_argument("--once", action="store_true", help="one probe; the exit code says whether it passed")
    parser.add_argument("--interval", type=positive, default=60.0, help="seconds between probes (default 60)")
    parser.add_argument("--timeout", type=positive, default=30.0, help="seconds a probe may take (default 30)")
    parser.add_argument("--json", action="store_true", help="one JSON object per probe")
    parser.add_argument("--metrics-host", default="127.0.0.1", help="where to serve /metrics (default 127.0.0.1)")
    parser.add_argument(
        "--metrics-port", type=port, default=DEFAULT_METRICS_PORT,
        help=f"Prometheus port of the continuous mode (default {DEFAULT_METRICS_PORT}; 0: none)",
    )  # fmt: skip
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Options:
    target: Target
    once: bool
    interval: float
    as_json: bool
    metrics_host: str
    metrics_port: int


def run(args: argparse.Namespace) -> int:
    settings = CanarySettings()
    if settings.canary_secret is None:
        raise ConfigurationError("CONVEYOR_CANARY_SECRET is not set (the processors' secret)")
    api_key = args.api_key or (settings.canary_api_key.get_secret_value() if settings.canary_api_key else None)
    target = Target(
        url=args.url or str(settings.canary_url),
        api_key=api_key,
        secret=settings.canary_secret.get_secret_value().encode(),
        timeout=args.timeout,
        fifo=queue_name_of(settings).endswith(".fifo"),
    )
    options = Options(target, args.once, args.interval, args.json, args.metrics_host, args.metrics_port)
    return asyncio.run(_main(settings, options))


async def _main(settings: CanarySettings, options: Options) -> int:
    async with sqs_client(settings) as client, aiohttp.ClientSession() as http:
        try:
            reply_url = await canary_queue_url(client, settings)
        except SQS_ERRORS as exc:
            failure = classify(exc)
            message = f"canary queue {canary_name(queue_name_of(settings))} unreachable: {failure.message}"
            raise SqsError(replace(failure, message=message)) from exc
        inbox = ReplyInbox(client, reply_url, options.target.secret, stale_after=options.target.timeout)
        prober = Prober(http, options.target, inbox)
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside asyncio.run
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            if options.once:
                return await _once(prober, options)
            await _continuous(prober, inbox, options)
        except asyncio.CancelledError:
            return EXIT_INTERRUPTED if options.once else 0
    return 0


async def _once(prober: Prober, options: Options) -> int:
    result = await prober.probe()
    if options.as_json:
        print(json.dumps(as_record(result)), flush=True)
    if not result.ok:
        print(f"{PROG}: {result.error}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    if not options.as_json:
        print(f"{PROG}: {describe(result)}", flush=True)
    return 0


async def _continuous(prober: Prober, inbox: ReplyInbox, options: Options) -> None:
    metrics = CanaryMetrics()
    if options.metrics_port:
        _serve_metrics(metrics, options.metrics_host, options.metrics_port)
    while True:
        started = time.monotonic()
        result = await prober.probe()
        metrics.observe(result)
        _print_probe(result, options.as_json)
        for reply in inbox.late:
            metrics.late.inc()
            late = {"late_reply": True, "canary_id": reply.id, "processor": reply.processor}
            line = f"late reply: canary {reply.id} handled by {reply.processor} after its probe gave up"
            print(json.dumps(late) if options.as_json else f"{_now()} {PROG}: {line}", flush=True)
        inbox.late.clear()
        await asyncio.sleep(max(0.0, options.interval - (time.monotonic() - started)))


def _serve_metrics(metrics: CanaryMetrics, host: str, port_number: int) -> None:
    try:
        start_http_server(port_number, host, metrics.registry)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{port_number}: {exc.strerror}") from exc


def _print_probe(result: ProbeResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(as_record(result)), flush=True)
    else:
        print(f"{_now()} {PROG}: {describe(result) if result.ok else 'FAILED: ' + str(result.error)}", flush=True)


def describe(result: ProbeResult) -> str:
    """The human line of a successful probe."""
    return (
        f"ok: handled by {result.processor} {result.e2e_seconds or 0:.3f} s after the 202"
        f" (POST {result.post_seconds or 0:.3f} s; message {result.message_id}, canary {result.canary_id})"
    )


def as_record(result: ProbeResult) -> dict[str, Any]:
    """The JSON line of a probe."""
    record = {"time": _iso(result.at), "ok": result.ok, **asdict(result)}
    del record["at"]
    for key in ("post_seconds", "e2e_seconds"):
        if record[key] is not None:
            record[key] = round(record[key], 4)
    return record


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now() -> str:
    return _iso(time.time())
