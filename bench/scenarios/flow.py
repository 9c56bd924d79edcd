"""Flow-control benchmark: a downstream outage, a rate limit, a throttling downstream.

    .venv/bin/python -m bench.scenarios.flow [--only outage rate throttle] [--quick] [--json FILE]

Each scenario runs its variants on one LocalStack, each on a fresh queue and DLQ of its own
(maxReceiveCount 3), concurrency 50, the handlers of bench/flow_handlers.py:

- (a) ``conveyor-flow``: queue-processor with flow control as it comes (adaptive concurrency and
  the breaker on, ``conveyor.Throttle`` raised where the downstream is saturated);
- (b) ``conveyor-today``: queue-processor with ``CONVEYOR_ADAPTIVE_CONCURRENCY=false
  CONVEYOR_BREAKER=false``, its handler raising a plain exception instead of Throttle;
- (c) ``naive``: the naive consumer (bench/baselines/naive_consumer.py), sync handler on the body.

``outage``: 200 messages; the downstream is down for the first 40 s (every call raises
ConnectionError), then each call takes 0.1 s and succeeds. The variants run at the same time, on
the same clock. Measured: dead-lettered, handled, handler calls and receives during the outage,
and how long after the heal every message was handled (waiting at most 150 s).

``rate``: ``CONVEYOR_RATE_LIMIT_PER_SECOND=20``, a 0.1 s handler, a backlog of 1,000; one process,
then two processes on one queue sharing the limit through a redis-server
(``CONVEYOR_RATE_LIMIT_STORE``). Handler starts per second in 1-s buckets, without the first and
last 2 s. (b) and (c), unlimited, for contrast.

``throttle``: a downstream admitting 30 calls/s (token bucket, burst 30, in the handler's process;
0.1 s per admitted call), refusing the others at once (Throttle(after=1.0), or RuntimeError("429")
for (b) and (c)); 600 messages. Goodput (successes per second between the 10th and 90th percentile
of successes), calls, throttled calls, dead-lettered, wall time to drain. (a) again with
``after=0.1``. The (a) rows run alone, one after the other; (b) and (c) together.

``--quick`` shortens each (fewer messages, a 20 s outage). Tables go to stdout as each scenario
ends, then one JSON line with everything (or to ``--json FILE``). ``--keep DIR`` keeps each run's
handler calls (``DIR/<queue>.calls``: ``event seq started ended pid``); ``--src`` runs another
checkout's conveyor package.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.localstack import boto_client
from harness.redis import RedisServer

from bench.services import REPO, Service, create_queues, free_port, localstack, module, script, service, service_env

MAX_RECEIVE_COUNT = 3
CONCURRENCY = 50
POLL_SECONDS = 0.25
RECEIVED = "conveyor_processor_received_total"
BREAKER = "conveyor_processor_breaker_state"
LIMIT = "conveyor_processor_concurrency_limit"
BREAKER_STATES = {0: "closed", 1: "open", 2: "half-open"}
SOURCE = {"src": REPO / "src"}  # the conveyor package measured (--src)

type Row = dict[str, Any]


@dataclass(frozen=True)
class Variant:
    name: str
    naive: bool = False
    env: tuple[tuple[str, str], ...] = ()


FLOW = Variant("conveyor-flow")
TODAY = Variant(
    "conveyor-today",
    env=(
        ("CONVEYOR_ADAPTIVE_CONCURRENCY", "false"),
        ("CONVEYOR_BREAKER", "false"),
        ("CONVEYOR_BENCH_PLAIN_ERRORS", "1"),
    ),
)
NAIVE = Variant("naive", naive=True, env=(("CONVEYOR_BENCH_PLAIN_ERRORS", "1"),))


@dataclass(frozen=True)
class Call:
    event: str  # ok, fail, throttled
    seq: int
    started: float
    ended: float
    pid: int


@dataclass
class Queue:
    """A fresh queue and DLQ, preloaded, and the file its handlers write their calls to."""

    endpoint: str
    name: str
    url: str
    dlq_url: str
    calls_file: Path

    def counts(self, url: str | None = None) -> int:
        """Messages on the queue (or the DLQ): visible, in flight and delayed."""
        response = boto_client(self.endpoint).get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )  # fmt: skip
        return sum(int(value) for value in response["Attributes"].values())

    def dead_lettered(self) -> int:
        return self.counts(self.dlq_url)

    def calls(self) -> list[Call]:
        if not self.calls_file.exists():
            return []
        calls = []
        for line in self.calls_file.read_text().splitlines():
            event, seq, started, ended, pid = line.split()
            calls.append(Call(event, int(seq), float(started), float(ended), int(pid)))
        return calls


def make_queue(endpoint: str, directory: Path, messages: int, max_receive_count: int = MAX_RECEIVE_COUNT) -> Queue:
    """create_queues' queue and DLQ, its redrive policy set to ``max_receive_count`` receives (the
    shared helper's count is the other benchmarks'), then ``messages`` bodies ``{"seq": n}``."""
    name = f"flow-{uuid.uuid4().hex[:8]}"
    url = create_queues(endpoint, name)
    client = boto_client(endpoint)
    dlq_url = client.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
    policy = json.loads(
        client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    )
    policy["maxReceiveCount"] = str(max_receive_count)
    client.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})

    def send(start: int) -> None:
        entries = [
            {"Id": str(i), "MessageBody": json.dumps({"seq": i})} for i in range(start, min(start + 10, messages))
        ]
        client.send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, range(0, messages, 10)))
    return Queue(endpoint, name, url, dlq_url, directory / f"{name}.calls")


@dataclass
class Consumer:
    """One variant's run: its queue, its processes, and what /metrics said over time."""

    variant: Variant
    queue: Queue
    messages: int
    services: list[Service] = field(default_factory=list)
    ready_at: float = 0.0  # epoch seconds
    settled_at: float | None = None  # epoch seconds the queue was first seen empty
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    dead_letters: list[tuple[float, int]] = field(default_factory=list)  # (epoch, messages on the DLQ)
    down_until: float = 0.0  # the outage's end for this variant's handler (epoch seconds)
    last_each: list[dict[str, float]] = field(default_factory=list)  # the last /metrics of each process

    def sample(self) -> None:
        self.dead_letters.append((time.time(), self.queue.dead_lettered()))
        if self.variant.naive:
            return
        merged: dict[str, float] = {}
        each = []
        for running in self.services:
            try:
                samples = running.metrics()
            except OSError:  # a slow answer under load: the next poll will do
                return
            each.append(samples)
            for key, value in samples.items():
                merged[key] = merged.get(key, 0.0) + value
        self.samples.append((time.time(), merged))
        self.last_each = each

    def check_settled(self) -> bool:
        if self.settled_at is None and self.queue.counts() == 0:
            self.settled_at = time.time()
        return self.settled_at is not None

    def dead_lettered_by(self, at: float) -> int:
        return max((count for t, count in self.dead_letters if t <= at), default=0)

    def metric_at(self, name: str, at: float) -> float | None:
        """``name``'s value at epoch ``at``, interpolated between the polls around it."""
        points = [(t, s[name]) for t, s in self.samples if name in s]
        before = [p for p in points if p[0] <= at]
        after = [p for p in points if p[0] > at]
        if not before:
            return after[0][1] if after else None
        if not after:
            return before[-1][1]
        (t0, v0), (t1, v1) = before[-1], after[0]
        return v0 + (v1 - v0) * (at - t0) / (t1 - t0)

    def series(self, name: str) -> list[tuple[float, float]]:
        return [(t - self.ready_at, s[name]) for t, s in self.samples if name in s]


def processor_env(
    endpoint: str, queue: Queue, *, variant: Variant, handler: str, port: int, extra: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    env = service_env(
        endpoint, CONVEYOR_QUEUE_NAME=queue.name, CONVEYOR_QUEUE_URL=queue.url, CONVEYOR_PROCESSOR_PORT=str(port),
        CONVEYOR_CONCURRENCY=str(CONCURRENCY), CONVEYOR_BENCH_CALLS_FILE=str(queue.calls_file),
        # this checkout's package (or --src), not whatever the editable install of .venv points at
        PYTHONPATH=os.pathsep.join([str(SOURCE["src"]), str(REPO)]),
    )  # fmt: skip
    env |= dict(variant.env) | extra
    if variant.naive:
        env["CONVEYOR_HANDLER"] = f"bench.flow_handlers:{handler}_sync"
        return module("bench.baselines.naive_consumer"), env
    env["CONVEYOR_HANDLER"] = f"bench.flow_handlers:{handler}"
    env["CONVEYOR_SQS_MAX_POOL_CONNECTIONS"] = str(max(64, CONCURRENCY))
    return script("queue-processor"), env


def launch(
    stack: ExitStack, consumer: Consumer, handler: str, extra: dict[str, str] | None = None, processes: int = 1
) -> None:
    """Start the variant's process(es) on its queue; stopped when ``stack`` closes."""
    for _ in range(processes):
        port = free_port()
        argv, env = processor_env(
            consumer.queue.endpoint,
            consumer.queue,
            variant=consumer.variant,
            handler=handler,
            port=port,
            extra=extra or {},
        )
        consumer.services.append(stack.enter_context(service(argv, env, port, "/metrics")))
    consumer.ready_at = time.time()


def watch(consumers: Sequence[Consumer], deadline: float, done: Callable[[Consumer], bool]) -> None:
    """Poll /metrics and the queues until every consumer is ``done`` or the epoch ``deadline``."""
    while time.time() < deadline:
        pending = False
        for consumer in consumers:
            consumer.sample()
            pending |= not done(consumer)
        if not pending:
            return
        time.sleep(POLL_SECONDS)


def handled(calls: Sequence[Call]) -> dict[int, float]:
    """Each message handled successfully, with when its first success ended."""
    first: dict[int, float] = {}
    for call in sorted((c for c in calls if c.event == "ok"), key=lambda c: c.ended):
        first.setdefault(call.seq, call.ended)
    return first


def breaker_story(consumer: Consumer) -> str:
    """The breaker's transitions as ``state@seconds`` since the processor was ready."""
    story: list[str] = []
    last: float | None = None
    for at, value in consumer.series(BREAKER):
        if value != last:
            story.append(f"{BREAKER_STATES.get(int(value), value)}@{at:.1f}s")
            last = value
    if len(story) > 12:
        story = [*story[:6], f"... {len(story) - 11} more ...", *story[-5:]]
    return " ".join(story) or "no breaker metric"


FLOW_COUNTERS = ("breaker_transitions", "throttled", "rate_limit", "retried", "dead_lettered")


def flow_counters(consumer: Consumer) -> str:
    """The processor's own flow-control metrics at the end of the run (one value per process, a/b)."""
    if not consumer.last_each:
        return "no /metrics sample"
    prefix = "conveyor_processor_"
    keys = sorted({key for samples in consumer.last_each for key in samples})
    found = [
        f"{key.removeprefix(prefix)}={'/'.join(f'{samples.get(key, 0.0):g}' for samples in consumer.last_each)}"
        for key in keys
        if key.startswith(prefix) and any(word in key for word in FLOW_COUNTERS)
    ]
    return " ".join(found) or "no flow-control counters"


def limit_summary(consumer: Consumer, until: float | None = None) -> str:
    values = [v for at, v in consumer.series(LIMIT) if until is None or at <= until]
    if not values:
        return "no concurrency-limit metric"
    return f"min {min(values):.0f} max {max(values):.0f} last {values[-1]:.0f}"


# outage -------------------------------------------------------------------------------------------


def outage(endpoint: str, directory: Path, quick: bool) -> tuple[list[Row], list[str]]:
    messages, down, cap = (100, 20.0, 60.0) if quick else (200, 40.0, 150.0)
    consumers = [Consumer(v, make_queue(endpoint, directory, messages), messages) for v in (FLOW, TODAY, NAIVE)]
    with ExitStack() as stack:
        for consumer in consumers:
            # each its own outage from its own start (the processes start one after another)
            consumer.down_until = time.time() + down
            launch(stack, consumer, "outage", {"CONVEYOR_BENCH_DOWN_UNTIL": repr(consumer.down_until)})
        last_heal = max(c.down_until for c in consumers)
        watch(consumers, last_heal + cap, lambda c: time.time() > c.down_until and c.check_settled())
    rows, notes = [], []
    for consumer in consumers:
        down_until = consumer.down_until
        calls = consumer.queue.calls()
        ok = handled(calls)
        during = [c for c in calls if c.started < down_until]
        received = len(during) if consumer.variant.naive else consumer.metric_at(RECEIVED, down_until)
        everything = sorted(ok.values())[-1] - down_until if len(ok) >= messages else None
        rows.append({
            "variant": consumer.variant.name,
            "queue": consumer.queue.name,
            "messages": messages,
            "outage_s": round(down_until - min((c.started for c in calls), default=down_until), 1),
            "dead_lettered": consumer.queue.dead_lettered(),
            "dead_lettered_in_outage": consumer.dead_lettered_by(down_until),
            "handled": len(ok),
            "left_on_queue": consumer.queue.counts(),
            "calls_in_outage": len(during),
            "received_in_outage": None if received is None else round(received),
            "handled_10s_after_heal": sum(1 for at in ok.values() if at <= down_until + 10),
            "all_handled_after_heal_s": None if everything is None else round(everything, 1),
            "last_success_after_heal_s": round(max(ok.values()) - down_until, 1) if ok else None,
            "settled_after_heal_s": None if consumer.settled_at is None else round(consumer.settled_at - down_until, 1),
            "calls_total": len(calls),
        })  # fmt: skip
        if not consumer.variant.naive:
            heal = down_until - consumer.ready_at
            notes.append(f"{consumer.variant.name}: heal at {heal:.1f}s; breaker {breaker_story(consumer)}")
            notes.append(
                f"{consumer.variant.name}: concurrency limit during the outage {limit_summary(consumer, heal)};"
                f" overall {limit_summary(consumer)}"
            )
            notes.append(f"{consumer.variant.name}: {flow_counters(consumer)}")
    return rows, notes


def outage_targets(rows: list[Row]) -> list[str]:
    flow = next(r for r in rows if r["variant"] == FLOW.name)
    received = flow["received_in_outage"]
    return [
        check("outage (a) dead-lettered == 0", flow["dead_lettered"] == 0, flow["dead_lettered"]),
        check("outage (a) all handled after the heal", flow["handled"] == flow["messages"], flow["handled"]),
        check("outage (a) received during the outage <= 100", received is not None and received <= 100, received),
    ]


# rate ---------------------------------------------------------------------------------------------


def per_second(starts: Sequence[float], trim: float = 2.0) -> dict[str, Any]:
    """Starts per 1-s bucket over [first + trim, last - trim]; over the whole span if that is too short."""
    if len(starts) < 2:
        return {
            "mean": None,
            "min": None,
            "max": None,
            "buckets": 0,
            "max_any_1s": None,
            "span_s": 0.0,
            "in_18_21": None,
        }
    ordered = sorted(starts)
    begin, end = ordered[0] + trim, ordered[-1] - trim
    buckets = int(end - begin)
    if buckets < 1:
        span = ordered[-1] - ordered[0]
        rate = round(len(ordered) / span, 1) if span > 0 else None
        return {
            "mean": rate, "min": None, "max": None, "buckets": 0, "max_any_1s": None, "span_s": round(span, 1),
            "in_18_21": None,
        }  # fmt: skip
    counts = Counter(int(t - begin) for t in ordered if begin <= t < begin + buckets)
    values = [counts.get(k, 0) for k in range(buckets)]
    inside = [t for t in ordered if begin <= t < begin + buckets]
    return {
        "mean": round(sum(values) / buckets, 1), "min": min(values), "max": max(values), "buckets": buckets,
        "max_any_1s": busiest_second(inside), "span_s": round(ordered[-1] - ordered[0], 1),
        # the share of buckets within the target (one batch of 10 landing either side of a bucket's edge
        # makes a 10 and a 30 of two steady 20s)
        "in_18_21": f"{sum(1 for v in values if 18 <= v <= 21)}/{buckets}",
    }  # fmt: skip


def busiest_second(ordered: Sequence[float]) -> int:
    """The most starts in any 1-s window (not only the buckets' own): what a limit per second must bound."""
    most, low = 0, 0
    for high, at in enumerate(ordered):
        while at - ordered[low] >= 1.0:
            low += 1
        most = max(most, high - low + 1)
    return most


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="conveyor-flow-redis-") as directory:
        server = RedisServer(Path(directory)).start()
        try:
            yield server
        finally:
            server.stop()


def rate_run(
    endpoint: str,
    directory: Path,
    *,
    variant: Variant,
    messages: int,
    extra: dict[str, str],
    processes: int,
    label: str,
) -> tuple[Row, str]:
    consumer = Consumer(variant, make_queue(endpoint, directory, messages), messages)
    limit = float(extra.get("CONVEYOR_RATE_LIMIT_PER_SECOND", "0")) or None
    budget = 30 + (3 * messages / limit if limit else 60)
    with ExitStack() as stack:
        launch(stack, consumer, "steady", extra, processes)
        watch([consumer], time.time() + budget, lambda c: len(handled(c.queue.calls())) >= messages)
    calls = consumer.queue.calls()
    starts = [c.started for c in calls]
    row: Row = {"variant": variant.name, "queue": consumer.queue.name, "setup": label, "messages": messages}
    row["started"] = len(calls)
    row |= {f"per_s_{k}": v for k, v in per_second(starts).items()}
    pids = sorted({c.pid for c in calls})
    if len(pids) > 1:
        row["per_process_mean"] = [per_second([c.started for c in calls if c.pid == pid])["mean"] for pid in pids]
    return row, f"{variant.name} ({label}): {flow_counters(consumer)}"


def rate(endpoint: str, directory: Path, quick: bool) -> tuple[list[Row], list[str]]:
    messages = 200 if quick else 1000
    limited = {"CONVEYOR_RATE_LIMIT_PER_SECOND": "20"}
    results = [rate_run(endpoint, directory, variant=FLOW, messages=messages, extra=limited, processes=1,
                        label="1 process, limit 20/s")]  # fmt: skip
    with redis_server() as redis:
        shared = limited | {"CONVEYOR_RATE_LIMIT_STORE": redis.url}
        results.append(rate_run(endpoint, directory, variant=FLOW, messages=messages, extra=shared, processes=2,
                                label="2 processes, limit 20/s in redis"))  # fmt: skip
    # for contrast: what the same backlog runs at without a limit
    for variant in (TODAY, NAIVE):
        results.append(rate_run(endpoint, directory, variant=variant, messages=messages, extra={}, processes=1,
                                label="1 process, no limit"))  # fmt: skip
    return [row for row, _ in results], [note for row, note in results if row["variant"] == FLOW.name]


def rate_targets(rows: list[Row]) -> list[str]:
    results = []
    for row in rows[:2]:
        mean, low, high = row["per_s_mean"], row["per_s_min"], row["per_s_max"]
        ok = all(v is not None and 18 <= v <= 21 for v in (mean, low, high))
        results.append(check(f"rate (a) {row['setup']}: 18-21/s", ok, f"mean {mean} min {low} max {high}"))
    return results


# throttle -----------------------------------------------------------------------------------------


def goodput(calls: Sequence[Call]) -> float | None:
    """Successes per second between the 10th and the 90th percentile of the successes."""
    ends = sorted(c.ended for c in calls if c.event == "ok")
    if len(ends) < 10:
        return None
    first, last = ends[len(ends) // 10], ends[(len(ends) * 9) // 10 - 1]
    inside = sum(1 for t in ends if first <= t <= last)
    return round(inside / (last - first), 1) if last > first else None


def throttle_row(consumer: Consumer, after: str) -> tuple[Row, list[str]]:
    calls = consumer.queue.calls()
    throttled = sum(1 for c in calls if c.event == "throttled")
    ok = handled(calls)
    successes = [c for c in calls if c.event == "ok"]
    wall = None if consumer.settled_at is None else round(consumer.settled_at - consumer.ready_at, 1)
    row: Row = {
        "variant": consumer.variant.name,
        "queue": consumer.queue.name,
        "after_s": after,
        "messages": consumer.messages,
        "goodput_per_s": goodput(calls),
        "success_per_s_overall": None if not wall else round(len(successes) / wall, 1),
        "calls": len(calls),
        "throttled": throttled,
        "throttled_ratio": round(throttled / len(calls), 3) if calls else None,
        "handled": len(ok),
        "dead_lettered": consumer.queue.dead_lettered(),
        "left_on_queue": consumer.queue.counts(),
        "drain_s": wall,
    }
    notes = []
    if not consumer.variant.naive:
        notes.append(f"{consumer.variant.name} after={after}: concurrency limit {limit_summary(consumer)}")
        received = consumer.samples[-1][1].get(RECEIVED) if consumer.samples else None
        notes.append(f"{consumer.variant.name} after={after}: received {received}; breaker {breaker_story(consumer)}")
        notes.append(f"{consumer.variant.name} after={after}: {flow_counters(consumer)}")
    return row, notes


def throttle(endpoint: str, directory: Path, quick: bool) -> tuple[list[Row], list[str]]:
    messages = 200 if quick else 600
    budget = 240.0
    rows, notes = [], []
    # (a) alone, so that its goodput is its own; then (b) and (c) together (the naive consumer waits
    # out a 30 s visibility timeout per failure: side by side they take the time of one)
    for after in ("1.0", "0.1"):
        consumer = Consumer(FLOW, make_queue(endpoint, directory, messages), messages)
        with ExitStack() as stack:
            launch(stack, consumer, "throttled", {"CONVEYOR_BENCH_THROTTLE_AFTER": after})
            watch([consumer], time.time() + budget, Consumer.check_settled)
        row, more = throttle_row(consumer, after)
        rows.append(row)
        notes += more
    consumers = [Consumer(v, make_queue(endpoint, directory, messages), messages) for v in (TODAY, NAIVE)]
    with ExitStack() as stack:
        for consumer in consumers:
            launch(stack, consumer, "throttled")
        watch(consumers, time.time() + budget, Consumer.check_settled)
    for consumer in consumers:
        row, more = throttle_row(consumer, "-")
        rows.append(row)
        notes += more
    return rows, notes


def throttle_targets(rows: list[Row]) -> list[str]:
    flow = rows[0]
    good, ratio = flow["goodput_per_s"], flow["throttled_ratio"]
    return [
        check("throttle (a) after=1.0 goodput >= 24/s", good is not None and good >= 24, good),
        check("throttle (a) after=1.0 throttled <= 15% of calls", ratio is not None and ratio <= 0.15, ratio),
        check("throttle (a) after=1.0 dead-lettered == 0", flow["dead_lettered"] == 0, flow["dead_lettered"]),
    ]


# output -------------------------------------------------------------------------------------------


def check(name: str, ok: bool, value: object) -> str:
    return f"{'MET   ' if ok else 'MISSED'} {name} (got {value})"


def table(rows: Sequence[Row]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[format_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def format_cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "/".join(format_cell(v) for v in value)
    return str(value)


SCENARIOS: dict[str, tuple[Callable[[str, Path, bool], tuple[list[Row], list[str]]], Callable[[list[Row]], list[str]]]]
SCENARIOS = {
    "outage": (outage, outage_targets),
    "rate": (rate, rate_targets),
    "throttle": (throttle, throttle_targets),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="fewer messages, a shorter outage (under 4 minutes)")
    parser.add_argument("--json", type=Path, help="write the summary here instead of stdout's last line")
    parser.add_argument("--gateway-server", default="twisted", choices=["twisted", "hypercorn"])
    parser.add_argument(
        "--keep", type=Path, help="write the handlers' call files here (kept) instead of a temporary folder"
    )
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the directory of the conveyor package to run")
    args = parser.parse_args(argv)
    SOURCE["src"] = args.src.resolve()
    summary: dict[str, Any] = {"quick": args.quick, "cores": os.cpu_count(), "src": str(SOURCE["src"]), "scenarios": {}}
    began = time.monotonic()
    with localstack(args.gateway_server) as stack, tempfile.TemporaryDirectory(prefix="conveyor-flow-") as tmp:
        print(f"# LocalStack ready in {time.monotonic() - began:.1f} s", flush=True)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        calls_dir = args.keep.resolve() if args.keep else Path(tmp)
        for name in args.only:
            run, targets = SCENARIOS[name]
            started = time.monotonic()
            rows, notes = run(stack.endpoint, calls_dir, args.quick)
            verdicts = targets(rows)
            print(f"\n## {name} ({time.monotonic() - started:.0f} s)\n{table(rows)}", flush=True)
            for line in [*notes, *verdicts]:
                print(f"  {line}", flush=True)
            summary["scenarios"][name] = {"rows": rows, "notes": notes, "targets": verdicts}
    summary["seconds"] = round(time.monotonic() - began)
    print(f"\n# flow benchmark: {summary['seconds']} s", flush=True)
    text = json.dumps(summary)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
