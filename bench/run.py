"""Run the benchmarks: the comparative ones in one go, on one LocalStack, and append the results.

    .venv/bin/python -m bench.run [--quick] [--only processor writer latency ...] [--note TEXT]
                                  [--results bench/results.jsonl] [--gateway-server twisted]

Every scenario under bench/scenarios/ is reachable from here. The comparative ones (processor,
writer, latency, fifo, dedupe, cost, payloads, mirror: the default; the quick profile leaves the cost
curve, the large payloads and the mirror out) share one LocalStack and append rows to the results.
The others (processes, idempotency_store, writer_idempotency, writer_cpu) each start what they need
and print their own table; ``--only NAME`` runs one with its defaults, and ``python -m
bench.scenarios.NAME --help`` shows its options.

Conveyor and the naive baselines are measured side by side (bench/scenarios/processor.py, bench/scenarios/writer.py,
bench/scenarios/latency.py). Each measurement is printed as it ends and, once the run is over, appended to the
results file as one JSON line (see bench/results.py). `make bench` is the full run, `make
bench-quick` the short one; `python -m bench.gate` then checks the run, `make report` plots it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.profiles import FULL, QUICK
from bench.results import RESULTS, Row, Run, append
from bench.scenarios import (
    cost,
    dedupe,
    fifo,
    flow,
    idempotency_store,
    latency,
    mirror,
    payloads,
    processes,
    processor,
    writer,
    writer_cpu,
    writer_idempotency,
)
from bench.services import localstack, sqs_server

BENCHES = {
    "processor": processor.measure,
    "writer": writer.measure,
    "latency": latency.measure,
    "fifo": fifo.measure,
    "dedupe": dedupe.measure,
    "cost": cost.measure,
    "payloads": payloads.measure,
    "mirror": mirror.measure,
}
# Scenarios with their own set-up and table (their defaults; each module's --help gives the options).
STANDALONE: dict[str, Callable[[list[str]], object]] = {
    "processes": processes.main,
    "idempotency_store": idempotency_store.main,
    "writer_idempotency": writer_idempotency.main,
    "writer_cpu": writer_cpu.main,
    "flow": flow.main,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the short profile (CI, every commit)")
    parser.add_argument("--only", nargs="+", choices=[*BENCHES, *STANDALONE], default=list(BENCHES))
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append to")
    parser.add_argument("--note", default="", help="a word on the run, kept in each row (e.g. 'busy machine')")
    parser.add_argument("--gateway-server", default="twisted", choices=["twisted", "hypercorn"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    for name in (name for name in args.only if name in STANDALONE):
        print(f"# {name} (python -m bench.scenarios.{name})", flush=True)
        STANDALONE[name]([])
    args.only = [name for name in args.only if name in BENCHES]
    if not args.only:
        return 0
    profile = QUICK if args.quick else FULL
    run = Run(sqs_server=sqs_server(args.gateway_server), profile=profile.name, note=args.note)
    print(f"# bench run {run.id} ({profile.name}; {run.sqs_server}; {run.cores} cores{'; dirty tree' * run.dirty})")
    rows: list[Row] = []

    def emit(bench: str, system: str, params: dict[str, Any], figures: dict[str, Any]) -> None:
        rows.append(run.row(bench, system, params, figures))
        print(json.dumps({"bench": bench, "system": system, **params, **figures}), flush=True)

    began = time.monotonic()
    with localstack(args.gateway_server) as stack:
        print(f"# LocalStack ready in {time.monotonic() - began:.1f} s", flush=True)
        for name in args.only:
            started = time.monotonic()
            BENCHES[name](stack.endpoint, profile, emit)
            print(f"# {name}: {time.monotonic() - started:.0f} s", flush=True)
    append(args.results, rows)
    print(f"# {len(rows)} results appended to {args.results} in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
