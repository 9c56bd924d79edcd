"""The writer's mirror (``CONVEYOR_MIRROR_QUEUE_URL``) against the live path: what copying every
accepted message to a second queue costs the clients, and what losing that queue mid-load does.

    .venv/bin/python -m bench.run --only mirror                   (rows go to the results)
    .venv/bin/python -m bench.scenarios.mirror [--rounds 3 --seconds 5 --fault-seconds 10] [--json FILE]

**A/B**: two of Conveyor's writers run at once on the same LocalStack, each on a fresh live queue:
one without a mirror ("off"), one with ``CONVEYOR_MIRROR_RATIO=1`` to a mirror queue of its own
("on"). The same closed loop (64 clients, bench/load.py's body) loads one, then the other, in rounds
whose order alternates (off/on, on/off, ...), so that drift of the shared machine (LocalStack's
queues growing, other work on the cores) falls on both alike. For each, summed over the rounds:
accepted/s, POST p50/p99, error answers (non-2xx), SQS calls and writer CPU per accepted message,
and the accepted messages not on the live queue; for "on" also the copies sent, dropped and failed
(``conveyor_writer_mirror_total``, once the mirror's buffer has drained), their sum against the
accepted messages, and the mirror queue's message count (``ApproximateNumberOfMessages``) against
``sent``. The throughput ratio on/off is in the "on" row.

**Fault**: a third writer, mirror on, loaded for ``--fault-seconds``; halfway the mirror queue is
deleted (``DeleteQueue``). The clients' answers and throughput before and after the delete (a
request counts as "after" when it started once the delete had returned), and the mirror counters
at the delete and at the end: ``failed`` grows after it, and nothing changes for the clients.

In the full run (about 60 s); not in the quick one: see docs/benchmarks.md, "Mirroring live traffic".
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import aiohttp
from harness.localstack import boto_client

from bench.load import BODY, Tally, closed_loop, post
from bench.profiles import CONVEYOR, FULL, Profile
from bench.results import Emit
from bench.services import (
    REPO,
    Service,
    create_queues,
    free_port,
    localstack,
    percentile,
    queue_count,
    script,
    service,
    service_env,
    sum_samples,
)

OFF, ON = "off", "on"  # the "mirror" param of the rows
MIRROR = "conveyor_writer_mirror_total"
REQUESTS = "conveyor_sqs_requests_total"
OUTCOMES = ("sent", "dropped", "failed")
SETTLE_TIMEOUT = 15.0  # the mirror's buffer (1,000 copies at most) drains at one call in flight


@contextmanager
def writer(endpoint: str, queue: str, url: str, mirror_url: str | None = None) -> Iterator[Service]:
    port = free_port()
    mirror = {"CONVEYOR_MIRROR_QUEUE_URL": mirror_url, "CONVEYOR_MIRROR_RATIO": "1"} if mirror_url else {}
    env = service_env(
        endpoint, CONVEYOR_QUEUE_NAME=queue, CONVEYOR_QUEUE_URL=url, CONVEYOR_WRITER_PORT=str(port),
        # This checkout's own code (a worktree's), before whichever the interpreter has installed.
        PYTHONPATH=os.pathsep.join((str(REPO / "src"), str(REPO))), **mirror,
    )  # fmt: skip
    with service(script("queue-writer"), env, port, "/readyz") as running:
        yield running


def fresh_queue(endpoint: str) -> tuple[str, str]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    return queue, create_queues(endpoint, queue)


def plain_queue(endpoint: str) -> str:
    """A mirror queue: no DLQ (nobody consumes it here)."""
    return boto_client(endpoint).create_queue(QueueName=f"bench-mirror-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def visible(endpoint: str, url: str) -> int:
    names: list[Any] = ["ApproximateNumberOfMessages"]
    return int(boto_client(endpoint).get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"][names[0]])


def copies(server: Service) -> dict[str, int]:
    samples = server.metrics()
    return {outcome: int(sum_samples(samples, f'{MIRROR}{{outcome="{outcome}"}}')) for outcome in OUTCOMES}


def settle(server: Service, accepted: int, timeout: float = SETTLE_TIMEOUT) -> dict[str, int]:
    """The mirror counters once every accepted message has an outcome (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while sum((counts := copies(server)).values()) < accepted and time.monotonic() < deadline:
        time.sleep(0.1)
    return counts


def wait_count(read: Callable[[], int], expected: int, timeout: float = 10.0) -> int:
    """LocalStack's counts lag the sends a little: read until ``expected`` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while (found := read()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def ab(endpoint: str, rounds: int, seconds: float, clients: int) -> dict[str, dict[str, Any]]:
    (off_queue, off_url), (on_queue, on_url) = fresh_queue(endpoint), fresh_queue(endpoint)
    mirror_url = plain_queue(endpoint)
    tallies = {OFF: Tally(), ON: Tally()}
    per_round: dict[str, list[float]] = {OFF: [], ON: []}
    cpu, calls = dict.fromkeys(tallies, 0.0), dict.fromkeys(tallies, 0.0)
    with ExitStack() as stack:
        servers = {
            OFF: stack.enter_context(writer(endpoint, off_queue, off_url)),
            ON: stack.enter_context(writer(endpoint, on_queue, on_url, mirror_url)),
        }
        for n in range(rounds):
            for system in (OFF, ON) if n % 2 == 0 else (ON, OFF):
                server = servers[system]
                calls_before, cpu_before = sum_samples(server.metrics(), REQUESTS), server.cpu_seconds()
                tally = asyncio.run(closed_loop(server.url + "/messages", clients, seconds))
                if system == ON:  # the copies still buffered go now, not during off's next load, and are its cost
                    settle(server, tallies[ON].ok + tally.ok)
                cpu[system] += server.cpu_seconds() - cpu_before
                calls[system] += sum_samples(server.metrics(), REQUESTS) - calls_before
                per_round[system].append(rate(tally.ok, seconds))
                total = tallies[system]
                total.ok += tally.ok
                total.latencies_ms += tally.latencies_ms
                for status, count in tally.errors.items():
                    total.errors[status] = total.errors.get(status, 0) + count
        counts = settle(servers[ON], tallies[ON].ok)
    rows: dict[str, dict[str, Any]] = {}
    for system, url in ((OFF, off_url), (ON, on_url)):
        tally = tallies[system]
        on_queue_count = wait_count(functools.partial(queue_count, endpoint, url), tally.ok)
        rows[system] = {
            "accepted_per_s": rate(tally.ok, rounds * seconds),
            "accepted_per_s_by_round": per_round[system],
            "accepted": tally.ok,
            "error_answers": tally.failed,
            "errors_by_status": {str(k): v for k, v in sorted(tally.errors.items())},
            "p50_ms": percentile(tally.latencies_ms, 50),
            "p99_ms": percentile(tally.latencies_ms, 99),
            "sqs_requests_per_message": round(calls[system] / tally.ok, 3) if tally.ok else None,
            "cpu_ms_per_message": round(1000 * cpu[system] / tally.ok, 3) if tally.ok else None,
            "lost": max(tally.ok - on_queue_count, 0),
        }
    on, off = rows[ON], rows[OFF]
    on.update({f"copies_{outcome}": counts[outcome] for outcome in OUTCOMES})
    on["copies_unaccounted"] = on["accepted"] - sum(counts.values())
    on["mirror_queue_messages"] = wait_count(lambda: visible(endpoint, mirror_url), counts["sent"])
    on["throughput_ratio"] = round(on["accepted_per_s"] / off["accepted_per_s"], 3) if off["accepted_per_s"] else None
    if on["p99_ms"] is not None and off["p99_ms"]:
        on["p99_ratio"] = round(on["p99_ms"] / off["p99_ms"], 3)
    return rows


async def load_with_delete(url: str, clients: int, seconds: float, delete: Callable[[], None]) -> dict[str, Any]:
    """``clients`` closed loops for ``seconds``; ``delete`` runs (in a thread) halfway. The tallies of
    the requests started before the delete returned and after, and when it did."""
    before, after, done = Tally(), Tally(), asyncio.Event()
    began = time.monotonic()
    deadline, marks = began + seconds, {}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=timeout) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                await post(session, url, BODY, after if done.is_set() else before)

        async def halfway() -> None:
            await asyncio.sleep(seconds / 2)
            marks["delete_began"] = time.monotonic()
            await asyncio.to_thread(delete)
            marks["deleted"] = time.monotonic()
            done.set()

        async with asyncio.TaskGroup() as group:
            group.create_task(halfway())
            for _ in range(clients):
                group.create_task(client())
    return {"before": before, "after": after, "began": began, "ended": time.monotonic(), **marks}


def fault(endpoint: str, seconds: float, clients: int) -> dict[str, Any]:
    (queue, url), mirror_url = fresh_queue(endpoint), plain_queue(endpoint)
    sqs = boto_client(endpoint)
    at_delete: dict[str, int] = {}
    with writer(endpoint, queue, url, mirror_url) as server:

        def delete() -> None:
            at_delete.update(copies(server))
            sqs.delete_queue(QueueUrl=mirror_url)

        load = asyncio.run(load_with_delete(server.url + "/messages", clients, seconds, delete))
        before, after = load["before"], load["after"]
        counts = settle(server, before.ok + after.ok)
    on_queue_count = wait_count(lambda: queue_count(endpoint, url), before.ok + after.ok)
    return {
        "accepted": before.ok + after.ok,
        "before_accepted_per_s": rate(before.ok, load["deleted"] - load["began"]),
        "after_accepted_per_s": rate(after.ok, load["ended"] - load["deleted"]),
        "before_statuses": {"2xx": before.ok, **{str(k): v for k, v in sorted(before.errors.items())}},
        "after_statuses": {"2xx": after.ok, **{str(k): v for k, v in sorted(after.errors.items())}},
        "error_answers": before.failed + after.failed,
        "before_p99_ms": percentile(before.latencies_ms, 99),
        "after_p99_ms": percentile(after.latencies_ms, 99),
        "delete_seconds": round(load["deleted"] - load["delete_began"], 3),
        "lost": max(before.ok + after.ok - on_queue_count, 0),
        **{f"copies_{outcome}_at_delete": at_delete.get(outcome, 0) for outcome in OUTCOMES},
        **{f"copies_{outcome}": counts[outcome] for outcome in OUTCOMES},
        "copies_unaccounted": before.ok + after.ok - sum(counts.values()),
    }


def measure(endpoint: str, profile: Profile, emit: Emit) -> None:
    if not profile.mirror_rounds:
        return
    clients, seconds = profile.mirror_clients, profile.mirror_seconds
    params = {"clients": clients, "rounds": profile.mirror_rounds, "seconds": seconds, "ratio": 1.0}
    for mirror, figures in ab(endpoint, profile.mirror_rounds, seconds, clients).items():
        emit("mirror", CONVEYOR, {"mirror": mirror, **params}, figures)
    fault_params = {"clients": clients, "seconds": profile.mirror_fault_seconds, "ratio": 1.0}
    emit("mirror-fault", CONVEYOR, fault_params, fault(endpoint, profile.mirror_fault_seconds, clients))


def table(rows: Sequence[dict[str, Any]]) -> str:
    columns = ("mirror", "accepted_per_s", "p50_ms", "p99_ms", "error_answers", "sqs_requests_per_message",
               "cpu_ms_per_message", "lost", "copies_sent", "copies_dropped", "copies_failed",
               "mirror_queue_messages", "throughput_ratio")  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(key, "")) for key in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=FULL.mirror_rounds, help="A/B rounds (each: off and on)")
    parser.add_argument("--seconds", type=float, default=FULL.mirror_seconds, help="each load of a round")
    parser.add_argument("--fault-seconds", type=float, default=FULL.mirror_fault_seconds)
    parser.add_argument("--clients", type=int, default=FULL.mirror_clients)
    parser.add_argument("--json", help="also write the rows here, one JSON object per line")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with localstack("twisted") as stack:
        for mirror, figures in ab(stack.endpoint, args.rounds, args.seconds, args.clients).items():
            rows.append({"mirror": mirror, **figures})
            print(json.dumps(rows[-1]), flush=True)
        rows.append(
            {"mirror": "on, its queue deleted halfway", **fault(stack.endpoint, args.fault_seconds, args.clients)}
        )
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows[:2]))
    if args.json:
        with open(args.json, "w") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
