"""Run the comparative benchmarks in one go, on one LocalStack, and append the results.

    .venv/bin/python -m bench.run [--quick] [--only processor writer latency] [--note TEXT]
                                  [--results bench/results.jsonl] [--gateway-server twisted]

Conveyor and the naive baselines are measured side by side (bench/processor.py, bench/writer.py,
bench/latency.py). Each measurement is printed as it ends and, once the run is over, appended to the
results file as one JSON line (see bench/results.py). `make bench` is the full run, `make
bench-quick` the short one; `python -m bench.gate` then checks the run, `make report` plots it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import dedupe, fifo, latency, processor, writer
from bench.common import localstack, sqs_server
from bench.profiles import FULL, QUICK
from bench.results import RESULTS, Row, Run, append

BENCHES = {
    "processor": processor.measure,
    "writer": writer.measure,
    "latency": latency.measure,
    "fifo": fifo.measure,
    "dedupe": dedupe.measure,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the short profile (CI, every commit)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file to append to")
    parser.add_argument("--note", default="", help="a word on the run, kept in each row (e.g. 'busy machine')")
    parser.add_argument("--gateway-server", default="twisted", choices=["twisted", "hypercorn"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
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
