"""The benchmark gate CI applies to a run: only what does not depend on the machine's speed.

    .venv/bin/python -m bench.gate [--results bench/results.jsonl ...] [--run RUN_ID]

Checks the last run in the results (or ``--run``), Conveyor's rows against the bounds and against
the naive baseline measured in the same run:

- nothing lost: every preloaded message processed and gone from the queue, every accepted message
  on the queue (writer) and started by the handler (latency);
- no error answer from the writer (writer and latency benchmarks);
- SQS requests per message at most 0.22 (processor, every concurrency, and with the idempotency
  store), 0.3 (FIFO) and 0.12 (writer, 64 clients);
- Conveyor not slower than the naive baseline: throughput ratio at least 1 at every processor
  concurrency and at every writer client count from ``WRITER_RATIO_FROM_CLIENTS`` on;
- peak RSS at most 150 MB with 1,000 handlers in flight (full runs only);
- the writer's mirror (full runs only): no error answer with it off or on, nor with its queue deleted
  mid-load; every accepted message's copy sent, dropped or failed, every sent one on the mirror
  queue; copies failed once its queue is gone (its throughput ratio on/off is INFO);
- every measurement of the run's profile present.

Only checks that hold on any machine running the product correctly are gated: counts, ratios to a
baseline measured in the same run, and cost bounds the design guarantees (docs/benchmarks.md, "What
the gate checks, and why no machine's speed decides it", says why for each). The processor's cost
bounds rest on one stated condition, checked in the same row: the ten handlers of a receive end
within the delete linger of each other, which holds while ten messages cost the processor less CPU
than the linger; on a machine where they do not, the bound is printed as WARN with the reason.
Figures that depend on the machine (the writer's CPU efficiency) are printed as INFO.

Prints one line per check, then `gate: N passed, N failed`; exits 1 if any failed (2 if there is no
run to check).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.profiles import CONVEYOR, NAIVE, PROFILES
from bench.results import RESULTS, Row, find, latest_run, load, runs

PROCESSOR_REQUESTS_MAX = 0.22  # one receive and one delete batch per ten messages is 0.2: the floor
FIFO_REQUESTS_MAX = 0.3  # ten of one group per receive, one delete call per run of ten: 0.2
WRITER_REQUESTS_MAX = 0.12  # at 64 clients, one SendMessageBatch per nine messages or better
WRITER_REQUESTS_AT_CLIENTS = 64
RSS_MAX_MB = 150.0  # 1,000 handlers in flight (the full run's processor-rss measurement)
RATIO_MIN = 1.0
# The processor's default CONVEYOR_DELETE_LINGER_MS: the deletes of handlers that end within it of
# each other share a DeleteMessageBatch.
DELETE_LINGER_MS = 20.0
# Every writer client count is gated: a message that finds no SendMessageBatch in flight is sent at
# once, so one client is never held back by batching. (A count below this would be printed, WARN
# below 1, and not gated.)
WRITER_RATIO_FROM_CLIENTS = 1


@dataclass(frozen=True)
class Check:
    status: str  # PASS, FAIL, WARN (a ratio below 1 that is not gated), INFO (a figure, no verdict)
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.status:4}  {self.what}: {self.detail}"


def at_most(what: str, value: float | None, bound: float) -> Check:
    ok = value is not None and value <= bound
    return Check("PASS" if ok else "FAIL", what, f"{value} (at most {bound})")


def processor_cost(what: str, figures: dict[str, Any]) -> Check:
    """The processor's cost bound, gated where its condition holds (see the module's docstring)."""
    check = at_most(what, figures.get("sqs_requests_per_message"), PROCESSOR_REQUESTS_MAX)
    cpu = figures.get("cpu_ms_per_message")
    if check.status == "PASS" or (cpu is not None and 10 * cpu < DELETE_LINGER_MS):
        return check
    reason = f"not gated: ten messages cost {cpu} x 10 ms of CPU here, more than the {DELETE_LINGER_MS:g} ms linger"
    return Check("WARN", what, f"{check.detail}; {reason}")


def none_of(what: str, value: int | None) -> Check:
    return Check("PASS" if value == 0 else "FAIL", what, f"{value} (must be 0)")


def ratio(what: str, ours: float | None, theirs: float | None, *, gated: bool = True) -> Check:
    value = ours / theirs if ours is not None and theirs else None
    shown = f"{value:.2f}" if value is not None else "n/a"
    detail = f"{CONVEYOR} {ours} vs {NAIVE} {theirs}: ratio {shown} (at least {RATIO_MIN:.2f})"
    if value is not None and value >= RATIO_MIN:
        return Check("PASS", what, detail)
    if not gated:
        return Check("WARN", what, detail + ", not gated")
    return Check("FAIL", what, detail)


def efficiency(where: str, figures: dict[str, Any]) -> Check:
    """The writer's CPU efficiency and share of the ceiling: printed, not gated (both depend on the
    machine's speed and load)."""
    detail = (
        f"{figures.get('cpu_efficiency')} (no-op CPU per request / writer CPU per accepted message); "
        f"{figures.get('percent_of_noop')}% of the no-op's throughput"
    )
    return Check("INFO", f"{where}: CPU efficiency", detail)


def missing(what: str) -> Check:
    return Check("FAIL", what, "no measurement in this run")


def processor_checks(run: list[Row], concurrency: int) -> Iterator[Check]:
    where = f"processor c={concurrency}"
    ours, theirs = (
        find(run, "processor", CONVEYOR, concurrency=concurrency),
        find(run, "processor", NAIVE, concurrency=concurrency),
    )
    if ours is None or theirs is None:
        yield missing(where)
        return
    figures = ours["figures"]
    yield none_of(f"{where}: messages lost", figures["lost"])
    yield none_of(f"{where}: messages left on the queue", figures["left_on_queue"])
    yield processor_cost(f"{where}: SQS requests per message", figures)
    yield ratio(f"{where}: drained msg/s", figures["throughput_msg_s"], theirs["figures"]["throughput_msg_s"])


def writer_checks(run: list[Row], clients: int) -> Iterator[Check]:
    where = f"writer clients={clients}"
    ours, theirs = find(run, "writer", CONVEYOR, clients=clients), find(run, "writer", NAIVE, clients=clients)
    if ours is None or theirs is None:
        yield missing(where)
        return
    figures = ours["figures"]
    yield none_of(f"{where}: error answers", figures["error_answers"])
    yield none_of(f"{where}: accepted messages not on the queue", figures["lost"])
    if clients == WRITER_REQUESTS_AT_CLIENTS:
        yield at_most(f"{where}: SQS requests per message", figures["sqs_requests_per_message"], WRITER_REQUESTS_MAX)
        yield efficiency(where, figures)
    gated = clients >= WRITER_RATIO_FROM_CLIENTS
    yield ratio(f"{where}: accepted/s", figures["accepted_per_s"], theirs["figures"]["accepted_per_s"], gated=gated)


def latency_checks(run: list[Row]) -> Iterator[Check]:
    ours = find(run, "latency", CONVEYOR)
    if ours is None:
        yield missing("latency")
        return
    yield none_of("latency: error answers", ours["figures"]["error_answers"])
    yield none_of("latency: accepted messages never started", ours["figures"]["lost"])


def fifo_checks(run: list[Row]) -> Iterator[Check]:
    """The FIFO drain: nothing lost, the cost bound (its throughput is a figure, not gated: it has no
    naive baseline to compare with)."""
    ours = find(run, "fifo", CONVEYOR)
    if ours is None:
        return  # runs from before the FIFO benchmark existed
    figures = ours["figures"]
    yield none_of("fifo: messages lost", figures["lost"])
    yield none_of("fifo: messages left on the queue", figures["left_on_queue"])
    yield at_most("fifo: SQS requests per message", figures["sqs_requests_per_message"], FIFO_REQUESTS_MAX)


def dedupe_checks(run: list[Row]) -> Iterator[Check]:
    """The processor with the idempotency store: nothing lost, the same cost bound."""
    ours = find(run, "processor-dedupe", CONVEYOR, store="redis")
    if ours is None:
        return  # runs from before this benchmark existed
    figures = ours["figures"]
    yield none_of("dedupe: messages lost", figures["lost"])
    yield processor_cost("dedupe: SQS requests per message", figures)


def mirror_checks(run: list[Row]) -> Iterator[Check]:
    """The writer's mirror (full runs): counts only. The throughput ratio on/off is printed (INFO): on
    two shared cores LocalStack serves the copies' calls too, so it is this machine's figure."""
    off, on = find(run, "mirror", CONVEYOR, mirror="off"), find(run, "mirror", CONVEYOR, mirror="on")
    if off is None or on is None:
        return  # a quick run, or a run from before the mirror
    figures = on["figures"]
    for name, row in (("off", off), ("on", on)):
        yield none_of(f"mirror {name}: error answers", row["figures"]["error_answers"])
        yield none_of(f"mirror {name}: accepted messages not on the queue", row["figures"]["lost"])
    yield none_of(
        "mirror on: accepted messages with no copy outcome (sent, dropped, failed)", figures["copies_unaccounted"]
    )
    yield none_of(
        "mirror on: copies sent but not on the mirror queue", figures["copies_sent"] - figures["mirror_queue_messages"]
    )
    p99 = f"p99 {off['figures']['p99_ms']} -> {figures['p99_ms']} ms"
    detail = f"{figures.get('throughput_ratio')} (on/off accepted/s; not gated: this machine's figure); {p99}"
    yield Check("INFO", "mirror: throughput on/off", detail)
    fault = find(run, "mirror-fault", CONVEYOR)
    if fault is None:
        yield missing("mirror-fault")
        return
    figures = fault["figures"]
    yield none_of("mirror queue deleted: error answers", figures["error_answers"])
    yield none_of("mirror queue deleted: accepted messages not on the queue", figures["lost"])
    failed_after = figures["copies_failed"] - figures["copies_failed_at_delete"]
    ok = failed_after > 0
    yield Check(
        "PASS" if ok else "FAIL", "mirror queue deleted: copies failed after it", f"{failed_after} (must be > 0)"
    )


def check(run: list[Row]) -> list[Check]:
    """Every check of one run's rows (all from the same run)."""
    if not run:
        return [missing("run")]
    profile = PROFILES[run[0]["profile"]]
    checks: list[Check] = []
    for concurrency in profile.processor_concurrency:
        checks.extend(processor_checks(run, concurrency))
    for clients in profile.writer_clients:
        checks.extend(writer_checks(run, clients))
    checks.extend(latency_checks(run))
    checks.extend(fifo_checks(run))
    checks.extend(dedupe_checks(run))
    checks.extend(mirror_checks(run))
    rss = find(run, "processor-rss", CONVEYOR)
    if profile.rss_run or rss:
        peak = rss["figures"]["peak_rss_mb"] if rss else None
        checks.append(at_most("processor, 1,000 in flight: peak RSS MB", peak, RSS_MAX_MB))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, nargs="+", default=[RESULTS])
    parser.add_argument("--run", help="the run id to check (default: the last one)")
    args = parser.parse_args(argv)
    rows = load(*args.results)
    run = runs(rows).get(args.run, []) if args.run else latest_run(rows)
    if not run:
        print(
            f"bench.gate: no run {args.run or ''} in {' '.join(map(str, args.results))}".replace("  ", " "),
            file=sys.stderr,
        )
        return 2
    first = run[0]
    print(f"bench.gate: run {first['run']} ({first['profile']}; {first['sqs_server']}; {first['cores']} cores)")
    checks = check(run)
    for item in checks:
        print(item)
    failed = [item for item in checks if item.status == "FAIL"]
    passed = sum(item.status == "PASS" for item in checks)
    print(f"gate: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
