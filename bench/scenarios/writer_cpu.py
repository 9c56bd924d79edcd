"""The writer's CPU per accepted message against the no-op FastAPI endpoint's CPU per request (the
writer's CPU efficiency), for one or more writer variants, interleaved round by round on one LocalStack.

    .venv/bin/python -m bench.scenarios.writer_cpu [--rounds 5] [--seconds 10] [--clients 64]
        [--variant NAME=SRC[,KEY=VALUE...]] ... [--profile DIR]

A variant is this project's ``queue-writer`` run with ``SRC`` (a ``src`` directory: this checkout's by
default; another commit's from ``git archive <commit> src | tar -x -C /tmp/old``) first on its
``PYTHONPATH``, and any ``KEY=VALUE`` added to its environment (e.g. ``OTEL_TRACES_EXPORTER=console``).
Every round loads each variant and the no-op (bench/baselines/noop_writer.py) in turn, in a rotated
order, for ``--seconds`` with ``--clients`` concurrent clients (aiohttp, bench/load.py): the machine
is noisy, so the figures are medians over the rounds, and the efficiency of a round is computed from
the no-op measured in that same round.

``--profile DIR`` samples each variant with py-spy (250 Hz, ``--idle`` off) during its last round and
writes ``DIR/<variant>.txt`` (collapsed stacks, for flame graphs or ``bench/profile_summary.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import closed_loop
from bench.services import (
    REPO,
    Service,
    create_queues,
    free_port,
    localstack,
    module,
    percentile,
    script,
    service,
    service_env,
    sum_samples,
)

NOOP = "noop"
REQUESTS = "conveyor_sqs_requests_total"
PROFILE_RATE_HZ = 250


@dataclass
class Variant:
    name: str
    src: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, rest = text.partition("=")
        src, *pairs = rest.split(",") if rest else [str(REPO / "src")]
        env = dict(pair.split("=", 1) for pair in pairs)
        return cls(name, Path(src or REPO / "src").resolve(), env)


@contextmanager
def started(variant: Variant | None, endpoint: str) -> Iterator[Service]:
    queue = f"cpu-{uuid.uuid4().hex[:8]}"
    url = create_queues(endpoint, queue)
    port = free_port()
    env = service_env(endpoint, CONVEYOR_QUEUE_NAME=queue, CONVEYOR_QUEUE_URL=url, CONVEYOR_WRITER_PORT=str(port))
    if variant is None:
        argv = module("uvicorn", "bench.baselines.noop_writer:app", "--host", "127.0.0.1", "--port", str(port),
                      "--log-level", "warning", "--no-access-log")  # fmt: skip
    else:
        env |= {"PYTHONPATH": f"{variant.src}:{REPO}", **variant.env}
        argv = script("queue-writer")
    with service(argv, env, port, "/healthz") as running:
        yield running


def load(server: Service, *, noop: bool, clients: int, seconds: float, profile: Path | None) -> dict[str, Any]:
    calls_before = 0.0 if noop else sum_samples(server.metrics(), REQUESTS)
    cpu_before = server.cpu_seconds()
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server.process.pid),
             "--rate", str(PROFILE_RATE_HZ), "--format", "raw", "--output", str(profile), "--nonblocking",
             "--duration", str(int(seconds))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    tally = asyncio.run(closed_loop(server.url + "/messages", clients, seconds))
    cpu = server.cpu_seconds() - cpu_before
    calls = 0.0 if noop else sum_samples(server.metrics(), REQUESTS) - calls_before
    if spy is not None:
        spy.wait(30)
    return {
        "ok": tally.ok,
        "errors": tally.failed,
        "per_s": round(tally.ok / seconds, 1),
        "p99_ms": percentile(tally.latencies_ms, 99),
        "cpu_ms": round(1000 * cpu / tally.ok, 4) if tally.ok else None,
        "sqs_per_msg": round(calls / tally.ok, 4) if tally.ok and not noop else None,
    }


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def summary(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, rows in rounds.items():
        out[name] = {key: median(rows, key) for key in ("per_s", "p99_ms", "cpu_ms", "sqs_per_msg", "efficiency")}
        out[name]["errors"] = sum(r["errors"] for r in rows)
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--variant", action="append", type=Variant.parse, default=[])
    parser.add_argument("--profile", type=Path, help="py-spy each variant in the last round into this directory")
    parser.add_argument("--gateway-server", default="twisted", choices=["twisted", "hypercorn"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: stop the servers too
    variants: list[Variant] = args.variant or [Variant("conveyor", REPO / "src")]
    if args.profile is not None:
        if shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
            print("bench.scenarios.writer_cpu: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
            return 2
        args.profile.mkdir(parents=True, exist_ok=True)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in [*(v.name for v in variants), NOOP]}
    with localstack(args.gateway_server) as stack, ExitStack() as stack_of_servers:
        servers = {v.name: stack_of_servers.enter_context(started(v, stack.endpoint)) for v in variants}
        servers[NOOP] = stack_of_servers.enter_context(started(None, stack.endpoint))
        names = list(servers)
        for number in range(args.rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                last = number == args.rounds - 1
                profile = args.profile / f"{name}.txt" if args.profile is not None and last and name != NOOP else None
                row = load(servers[name], noop=name == NOOP, clients=args.clients, seconds=args.seconds,
                           profile=profile)  # fmt: skip
                rounds[name].append(row)
            noop_cpu = rounds[NOOP][-1]["cpu_ms"]
            for v in variants:
                row = rounds[v.name][-1]
                row["efficiency"] = round(noop_cpu / row["cpu_ms"], 3) if noop_cpu and row["cpu_ms"] else None
                print(json.dumps({"round": number, "variant": v.name, **row}), flush=True)
            print(json.dumps({"round": number, "variant": NOOP, **rounds[NOOP][-1]}), flush=True)
    print(json.dumps({"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
                      "medians": summary(rounds)}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
