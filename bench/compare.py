"""Compare two commits' benchmark figures from the results history.

    .venv/bin/python -m bench.compare <commit-a> <commit-b> [--profile full|quick] [--results FILE ...]

A commit is anything git resolves (a hash, a prefix, a branch, ``HEAD~3``) or a hash prefix found in
the results. Each side is that commit's last recorded run (of ``--profile``, if given). Prints
Conveyor's headline figures side by side with B/A, and Conveyor's ratio to the naive baseline
measured in each run: those ratios hold from machine to machine, the raw figures only on one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.profiles import CONVEYOR, NAIVE
from bench.results import RESULTS, Row, find, git, load, runs

COSTS = ("sqs_requests_per_message", "cpu_ms_per_message")
FIGURES = {
    "processor": ("throughput_msg_s", "percent_of_ideal", *COSTS, "peak_rss_mb"),
    "writer": ("accepted_per_s", "p50_ms", "p99_ms", *COSTS, "percent_of_noop", "cpu_efficiency"),
    "latency": ("p50_ms", "p90_ms", "p99_ms", "max_ms"),
}
VERSUS = {"processor": "throughput_msg_s", "writer": "accepted_per_s"}
KEYS = {"concurrency": "c", "clients": "clients"}  # what identifies a measurement across profiles


class CompareError(Exception):
    """A commit or run that cannot be compared; the message is one readable line."""


def resolve(ref: str, rows: list[Row]) -> str:
    full = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    candidates = {row["commit"] for row in rows if row["commit"].startswith(full or ref.lower())}
    if len(candidates) == 1:
        return str(candidates.pop())
    if len(candidates) > 1:
        raise CompareError(f"{ref} matches several commits in the results; give more of the hash")
    raise CompareError(f"no benchmark run recorded for {ref} ({full[:10] or 'not a known commit'})")


def last_run(commit: str, rows: list[Row], profile: str | None) -> list[Row]:
    chosen = [run for run in runs(rows).values() if run[0]["commit"] == commit and profile in (None, run[0]["profile"])]
    if not chosen:
        raise CompareError(f"no {profile or ''} run recorded for {commit[:10]}".replace("  ", " "))
    return chosen[-1]


def key(row: Row) -> dict[str, object]:
    return {k: row["params"][k] for k in KEYS if k in row["params"]}


def label(row: Row) -> str:
    return " ".join([str(row["bench"]), *(f"{KEYS[k]}={v}" for k, v in key(row).items())])


def versus(run: list[Row], row: Row) -> float | None:
    figure = VERSUS.get(row["bench"])
    naive = find(run, row["bench"], NAIVE, **key(row))
    if figure is None or naive is None or not naive["figures"].get(figure):
        return None
    return float(row["figures"][figure]) / float(naive["figures"][figure])


def lines(a: list[Row], b: list[Row]) -> Iterator[tuple[str, float | None, float | None]]:
    for row in a:
        if row["system"] != CONVEYOR or row["bench"] not in FIGURES:
            continue
        other = find(b, row["bench"], CONVEYOR, **key(row))
        for figure in FIGURES[row["bench"]]:
            yield f"{label(row)} {figure}", row["figures"].get(figure), other["figures"].get(figure) if other else None
        if row["bench"] in VERSUS:
            yield f"{label(row)} conveyor/naive", versus(a, row), versus(b, other) if other else None


def show(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="the commit to compare from")
    parser.add_argument("b", help="the commit to compare to")
    parser.add_argument("--profile", choices=["full", "quick"], help="only runs of this profile")
    parser.add_argument("--results", type=Path, nargs="+", default=[RESULTS])
    args = parser.parse_args(argv)
    rows = load(*args.results)
    try:
        a, b = (last_run(resolve(ref, rows), rows, args.profile) for ref in (args.a, args.b))
    except CompareError as error:
        print(f"bench.compare: {error}", file=sys.stderr)
        return 2
    for name, run in (("A", a), ("B", b)):
        first = run[0]
        print(f"{name}: run {first['run']} ({first['profile']}{', dirty' * first['dirty']}; {first['sqs_server']})")
    if a[0]["profile"] != b[0]["profile"]:
        print("note: the runs are of different profiles; compare the conveyor/naive ratios, not the raw figures")
    print(f"{'figure':58} {'A':>10} {'B':>10} {'B/A':>6}")
    for name, x, y in lines(a, b):
        change = f"{y / x:.2f}" if x and y is not None else "-"
        print(f"{name:58} {show(x):>10} {show(y):>10} {change:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
