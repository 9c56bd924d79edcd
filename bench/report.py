"""The quality report: one Markdown page with plots, from the benchmark history and the last test run.

    .venv/bin/python -m bench.report [--results bench/results.jsonl ...] [--out docs/quality] [--run RUN_ID]
                                     [--junit .conveyor/junit-unit.xml .conveyor/junit-e2e.xml]
                                     [--reliability .conveyor/reliability.jsonl]

Writes ``index.md`` and its SVG plots under ``--out``: the last complete benchmark run (Conveyor and
the baselines side by side, the gate's verdict), each headline figure over the runs, the last test
run (counts, durations, the slowest tests, from pytest's JUnit XML) and the reliability figures the
end-to-end suite wrote. Missing inputs are said as such ("no test run recorded").
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import plots
from bench.gate import PROCESSOR_REQUESTS_MAX, WRITER_REQUESTS_MAX, check
from bench.profiles import CONVEYOR, NAIVE, NOOP
from bench.results import REPO, RESULTS, Row, find, load, runs

STATE = REPO / ".conveyor"
JUNIT = (STATE / "junit-unit.xml", STATE / "junit-e2e.xml")
RELIABILITY = STATE / "reliability.jsonl"
OUT = REPO / "docs" / "quality"
SLOWEST = 10


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, dict):
        top = sorted(value.items(), key=lambda kv: -kv[1] if isinstance(kv[1], int | float) else 0)[:3]
        more = f" (+{len(value) - 3} more)" if len(value) > 3 else ""
        return ", ".join(f"{k} {fmt(v)}" for k, v in top) + more
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def shown_run(rows: list[Row], run_id: str | None = None) -> list[Row]:
    """The run ``run_id``, else the last run that measured all three benchmarks (else the last run)."""
    if run_id:
        return runs(rows).get(run_id, [])
    grouped = list(runs(rows).values())
    for run in reversed(grouped):
        if {"processor", "writer", "latency"} <= {row["bench"] for row in run}:
            return run
    return grouped[-1] if grouped else []


def header(run: list[Row]) -> str:
    first = run[0]
    note = f" Note: {first['note']}." if first.get("note") else ""
    dirty = " **From a dirty tree** (uncommitted changes)." if first["dirty"] else ""
    return (
        f"Benchmark run `{first['run']}`: commit `{first['commit'][:10]}`, {first['date']}, profile "
        f"**{first['profile']}**, {first['cores']} cores ({first['cpu']}), SQS: {first['sqs_server']}.{dirty}{note}"
    )


def gate_section(run: list[Row]) -> str:
    checks = check(run)
    failed = [c for c in checks if c.status == "FAIL"]
    passed = sum(c.status == "PASS" for c in checks)
    verdict = f"{passed} passed, **{len(failed)} failed**" if failed else f"{passed} passed, 0 failed"
    shown = [c for c in checks if c.status not in ("PASS", "INFO") or "ratio" in c.detail or "at most" in c.detail]
    return f"Gate (`python -m bench.gate`): {verdict}.\n\n" + table(
        ["", "check", "figure"], [(c.status, c.what, c.detail) for c in shown]
    )


def processor_section(run: list[Row], out: Path) -> str:
    plots.processor_throughput(run, out / "processor_throughput.svg")
    rows = []
    for row in sorted((r for r in run if r["bench"].startswith("processor")), key=lambda r: r["params"]["concurrency"]):
        f = row["figures"]
        name = row["system"] + (" (1 s handler)" if row["bench"] == "processor-rss" else "")
        rows.append((row["params"]["concurrency"], name, f["throughput_msg_s"], f["percent_of_ideal"],
                     f["sqs_requests_per_message"], f["cpu_ms_per_message"], f["peak_rss_mb"], f["lost"]))  # fmt: skip
    return "\n\n".join([
        "## queue-processor vs the naive consumer",
        "![drained messages per second vs concurrency](processor_throughput.svg)",
        table(["concurrency", "system", "msg/s", "% of ideal", "SQS req/msg", "CPU ms/msg", "peak RSS MB", "lost"],
              rows),
    ])  # fmt: skip


def writer_section(run: list[Row], out: Path) -> str:
    plots.writer_throughput(run, out / "writer_throughput.svg")
    order = {CONVEYOR: 0, NAIVE: 1, NOOP: 2}
    rows = []
    for row in sorted(
        (r for r in run if r["bench"] == "writer"), key=lambda r: (r["params"]["clients"], order[r["system"]])
    ):
        f = row["figures"]
        rows.append((row["params"]["clients"], row["system"], f["accepted_per_s"], f["p50_ms"], f["p99_ms"],
                     f["sqs_requests_per_message"], f["cpu_ms_per_message"], f["error_answers"]))  # fmt: skip
    ours = find(run, "writer", CONVEYOR, clients=64)
    efficiency = ""
    if ours:
        f = ours["figures"]
        efficiency = (
            f"At 64 clients Conveyor's writer reaches **{fmt(f.get('percent_of_noop'))}%** of the no-op ceiling's "
            f"throughput; its CPU efficiency (no-op CPU per request / writer CPU per accepted message) is "
            f"**{fmt(f.get('cpu_efficiency'))}**."
        )
    return "\n\n".join([
        "## queue-writer vs the naive endpoint and the no-op ceiling",
        "![accepted requests per second vs clients](writer_throughput.svg)",
        table(["clients", "system", "accepted/s", "p50 ms", "p99 ms", "SQS req/msg", "CPU ms/msg", "errors"], rows),
        efficiency,
    ])  # fmt: skip


def requests_section(run: list[Row], out: Path) -> str:
    bounds = {"processor bound": PROCESSOR_REQUESTS_MAX, "writer bound (64 clients)": WRITER_REQUESTS_MAX}
    plots.sqs_requests(run, out / "sqs_requests.svg", bounds)
    return "\n\n".join([
        "## SQS requests per message",
        "Every SQS request is billed: requests per message is the cost. Conveyor receives and deletes in "
        "batches of ten (the floor is 0.2 per processed message) and coalesces concurrent posts into "
        "SendMessageBatch; the naive code makes one request per message and step.",
        "![SQS requests per message](sqs_requests.svg)",
    ])  # fmt: skip


def latency_section(run: list[Row], out: Path) -> str:
    plots.latency(run, out / "latency.svg")
    rows = []
    for system in (CONVEYOR, NAIVE):
        row = find(run, "latency", system)
        if row:
            f = row["figures"]
            costs = (f.get("writer_sqs_requests_per_message"), f.get("processor_sqs_requests_per_message"))
            rows.append(
                (system, f["posted_per_s"], f["p50_ms"], f["p90_ms"], f["p99_ms"], f["max_ms"], f["lost"], *costs)
            )
    return "\n\n".join([
        "## Latency: POST to handler start",
        "![distribution of POST to handler start](latency.svg)",
        table(["system", "posted/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "lost", "SQS req/msg writer",
               "SQS req/msg processor"], rows),
        "SQS requests per message at this steady, unsaturated rate: the 0.2 floor of the processor and the "
        "writer's batches of about ten hold under saturation; at a steady rate a long poll returns with the "
        "messages that have arrived, and a batch leaves with the posts of its linger.",
    ])  # fmt: skip


def cost_section(rows: list[Row], out: Path) -> str:
    """The cost curve of the last run that measured it (``bench.run --only cost``, or a full run)."""
    measured = [run for run in runs(rows).values() if any(row["bench"] == "cost" for row in run)]
    if not measured:
        return "## Cost at every rate\n\nNo cost curve recorded (`python -m bench.run --only cost`)."
    cost = [row for row in measured[-1] if row["bench"] == "cost"]
    plots.cost_curve(cost, out / "cost.svg")
    listing = [
        (row["system"], row["params"]["rate_per_s"], row["params"]["window_ms"] if row["system"] == CONVEYOR else "-",
         *(row["figures"].get(k) for k in COST_FIGURES))
        for row in sorted(cost, key=lambda r: (r["params"]["rate_per_s"], r["system"] != CONVEYOR))
    ]  # fmt: skip
    return "\n\n".join([
        "## Cost at every rate: `CONVEYOR_BATCH_WINDOW_MS`",
        f"Run `{cost[0]['run']}`, commit `{cost[0]['commit'][:10]}`, {cost[0]['cpu']}. Steady posts through both "
        "services; SQS requests per accepted message and POST -> handler start ([Cost](../cost.md)).",
        "![requests per message and p99 against the rate, per window](cost.svg)",
        table(["system", "msg/s", "window ms", "posted/s", "writer req/msg", "processor req/msg", "receives/msg",
               "deletes/msg", "processor CPU ms/msg", "p50 ms", "p99 ms", "lost"], listing),
    ])  # fmt: skip


COST_FIGURES = (
    "posted_per_s", "writer_sqs_requests_per_message", "processor_sqs_requests_per_message", "receives_per_message",
    "deletes_per_message", "processor_cpu_ms_per_message", "p50_ms", "p99_ms", "lost",
)  # fmt: skip


def history_section(rows: list[Row], out: Path) -> str:
    grouped = runs(rows)
    plots.history(grouped, out / "history.svg")
    listing = [(run[0]["run"], run[0]["profile"], run[0]["dirty"], run[0].get("note", "")) for run in grouped.values()]
    return "\n\n".join([
        "## Over the commits",
        "Each headline figure, one point per run (oldest left; `+` after the commit: a dirty tree; hollow "
        "marks: quick runs, which are shorter and noisier). Compare two commits with "
        "`python -m bench.compare <commit-a> <commit-b>`.",
        "![headline figures over the commits](history.svg)",
        table(["run", "profile", "dirty", "note"], listing[-12:]),
    ])  # fmt: skip


@dataclass
class Suite:
    name: str
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    when: str = ""
    cases: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, test, outcome)


def read_junit(path: Path) -> Suite | None:
    if not path.exists():
        return None
    root = ET.parse(path).getroot()  # noqa: S314 - pytest's own output on this machine, not untrusted XML
    suite = Suite(path.name)
    for element in root.iter("testsuite"):
        suite.tests += int(element.get("tests", 0))
        suite.failures += int(element.get("failures", 0))
        suite.errors += int(element.get("errors", 0))
        suite.skipped += int(element.get("skipped", 0))
        suite.seconds += float(element.get("time", 0))
        suite.when = element.get("timestamp", "")[:19]
    for case in root.iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        suite.cases.append((float(case.get("time", 0)), name, outcome))
    return suite


def tests_section(paths: Sequence[Path]) -> tuple[str, str]:
    """The section, and the plain count line printed last ("tests: N passed, N failed, N skipped")."""
    suites = [suite for suite in map(read_junit, paths) if suite]
    if not suites:
        return (
            "## Last test run\n\nNo test run recorded (run `make test`: it writes pytest's JUnit XML to .conveyor/).",
            "",
        )
    counts = [
        (s.name, s.when, s.tests, s.tests - s.failures - s.errors - s.skipped, s.failures + s.errors, s.skipped,
         f"{s.seconds:.0f} s")
        for s in suites
    ]  # fmt: skip
    cases = sorted((case for s in suites for case in s.cases), reverse=True)
    failing = [(name, outcome) for _, name, outcome in cases if outcome in ("failure", "error")]
    passed, failed = sum(c[3] for c in counts), sum(c[4] for c in counts)
    parts = [
        "## Last test run",
        table(["JUnit file", "started", "tests", "passed", "failed", "skipped", "time"], counts),
        f"Slowest {SLOWEST}:\n\n"
        + table(["seconds", "test", "outcome"], [(f"{t:.1f}", n, o) for t, n, o in cases[:SLOWEST]]),
    ]  # fmt: skip
    if failing:
        parts.append("Failing:\n\n" + table(["test", "outcome"], failing))
    return "\n\n".join(parts), f"tests: {passed} passed, {failed} failed, {sum(c[5] for c in counts)} skipped"


def reliability_section(path: Path) -> str:
    latest: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                latest[record["test"]] = record
    if not latest:
        return (
            "## Reliability\n\nNo end-to-end run recorded (the e2e suite of `make test` writes "
            ".conveyor/reliability.jsonl)."
        )
    rows = [
        (test, record.get("at", ""), "; ".join(f"{k} {fmt(v)}" for k, v in record.items() if k not in ("test", "at")))
        for test, record in latest.items()
    ]
    return "\n\n".join([
        "## Reliability (the end-to-end suite's figures, last run of each test)",
        "What each test does and asserts: [docs/reliability.md](../reliability.md).",
        table(["test", "at", "figures"], rows),
    ])  # fmt: skip


def render(
    rows: list[Row], junit: Sequence[Path], reliability: Path, out: Path, run_id: str | None = None
) -> tuple[str, str]:
    """Write the plots under ``out``; return the page and the test count line."""
    out.mkdir(parents=True, exist_ok=True)
    run = shown_run(rows, run_id)
    tests, counts = tests_section(junit)
    parts = [
        "# Conveyor quality report",
        "Generated by `make report` (`python -m bench.report`) from bench/results.jsonl and the last `make test`; "
        'do not edit by hand. How to read it: docs/testing.md, "The quality report".',
    ]
    if run:
        parts += [
            header(run), gate_section(run), processor_section(run, out), writer_section(run, out),
            requests_section(run, out), latency_section(run, out), cost_section(rows, out), history_section(rows, out),
        ]  # fmt: skip
    else:
        parts.append("No benchmark run recorded: run `make bench-quick` (or `make bench`), then `make report`.")
    parts += [tests, reliability_section(reliability)]
    return "\n\n".join(parts) + "\n", counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, nargs="+", default=[RESULTS])
    parser.add_argument("--junit", type=Path, nargs="*", default=list(JUNIT))
    parser.add_argument("--reliability", type=Path, default=RELIABILITY)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--run", help="the run to show side by side (default: the last complete one)")
    args = parser.parse_args(argv)
    page, counts = render(load(*args.results), args.junit, args.reliability, args.out, args.run)
    (args.out / "index.md").write_text(page)
    print(f"bench.report: wrote {args.out / 'index.md'} and its plots")
    if counts:
        print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
