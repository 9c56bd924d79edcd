"""Cost benchmark: SQS requests per message and POST -> handler start latency at steady rates, for
each ``CONVEYOR_BATCH_WINDOW_MS``, through Conveyor's writer and processor and the naive pair.

    .venv/bin/python -m bench.run --only cost             (the full grid; rows go to the results)
    .venv/bin/python -m bench.scenarios.cost [--rates 200] [--windows 0 100] [--seconds 15] [--json FILE]

Each point posts ``rate x seconds`` messages at a steady rate (open loop, bench/load.py ``steady``)
to a fresh queue, with the writer and the processor of bench/scenarios/latency.py (concurrency 50,
a 0.1 s handler that notes its start first thing). Figures per accepted message: the writer's
SendMessage* calls, the processor's ReceiveMessage, DeleteMessageBatch and
ChangeMessageVisibilityBatch calls (each service's own ``conveyor_sqs_requests_total``, set-up calls
left out), the processor's CPU seconds, the POST -> handler start p50/p99, the POST's own p99, and
what was lost or started twice. The naive pair has no window: one row per rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.load import steady
from bench.profiles import CONVEYOR, NAIVE, Profile
from bench.results import Emit
from bench.scenarios.latency import CONCURRENCY, SETTLE_SECONDS, pipeline, starts, wait_started
from bench.services import localstack, percentile, sum_samples

REQUESTS = "conveyor_sqs_requests_total"
RATES = (20, 50, 200, 1000)
WINDOWS_MS = (0, 20, 100, 250)
SECONDS = 15.0
OPERATIONS = {
    "send": ("SendMessage", "SendMessageBatch"),
    "receive": ("ReceiveMessage",),
    "delete": ("DeleteMessage", "DeleteMessageBatch"),
    "visibility": ("ChangeMessageVisibility", "ChangeMessageVisibilityBatch"),
}


def calls(samples: dict[str, float], operations: Sequence[str]) -> float:
    return sum(sum_samples(samples, f'{REQUESTS}{{operation="{op}",') for op in operations)


def run_point(system: str, endpoint: str, rate: float, seconds: float, window_ms: float) -> dict[str, Any]:
    extra = {"CONVEYOR_BATCH_WINDOW_MS": str(window_ms)} if system == CONVEYOR else {}
    with tempfile.TemporaryDirectory(prefix="conveyor-cost-") as scratch:
        record = Path(scratch) / "starts.txt"
        with pipeline(system, endpoint, record, **extra) as (writer, processor):
            cpu_before = processor.cpu_seconds()

            def body(seq: int) -> dict[str, Any]:
                return {"body": {"seq": seq, "posted_at": time.time(), "payload": "x" * 200}}

            began = time.monotonic()
            tally, accepted = asyncio.run(steady(writer.url + "/messages", rate, seconds, body))
            elapsed = time.monotonic() - began
            wait_started(record, accepted, timeout=30)
            time.sleep(SETTLE_SECONDS + window_ms / 1000)  # the last deletes linger up to the window
            written, processed = writer.metrics(), processor.metrics()
            cpu = processor.cpu_seconds() - cpu_before
        first, repeats = starts(record)
    n = len(accepted)
    latencies = [ms for seq, ms in first.items() if seq in accepted]

    def each(value: float) -> float | None:
        return round(value / n, 4) if n else None

    sends = calls(written, OPERATIONS["send"])
    receives, deletes, changes = (calls(processed, OPERATIONS[op]) for op in ("receive", "delete", "visibility"))
    return {
        "posted_per_s": round((tally.ok + tally.failed) / elapsed, 1),
        "accepted": n,
        "error_answers": tally.failed,
        "lost": len(accepted - first.keys()),
        "started_twice": repeats,
        "writer_sqs_requests_per_message": each(sends),
        "processor_sqs_requests_per_message": each(receives + deletes + changes),
        "receives_per_message": each(receives),
        "deletes_per_message": each(deletes),
        "visibility_changes_per_message": each(changes),
        "processor_cpu_ms_per_message": round(1000 * cpu / n, 3) if n else None,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "post_p99_ms": percentile(tally.latencies_ms, 99),
    }


def points(rates: Sequence[float], windows: Sequence[float]) -> list[tuple[str, float, float]]:
    """(system, rate, window) in the order they run: each rate's windows, then its naive pair."""
    return [(s, r, w) for r in rates for s, w in [*((CONVEYOR, w) for w in windows), (NAIVE, 0.0)]]


def measure(endpoint: str, profile: Profile, emit: Emit) -> None:
    for system, rate, window in points(profile.cost_rates, profile.cost_windows_ms):
        params = {"rate_per_s": rate, "window_ms": window, "seconds": profile.cost_seconds, "concurrency": CONCURRENCY}
        emit("cost", system, params, run_point(system, endpoint, rate, profile.cost_seconds, window))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--windows", type=float, nargs="+", default=list(WINDOWS_MS))
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--json", type=Path, help="also write the rows here, one JSON object per line")
    args = parser.parse_args(argv)
    rows = []
    with localstack("twisted") as stack:
        for system, rate, window in points(args.rates, args.windows):
            figures = run_point(system, stack.endpoint, rate, args.seconds, window)
            rows.append({"system": system, "rate_per_s": rate, "window_ms": window, **figures})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
